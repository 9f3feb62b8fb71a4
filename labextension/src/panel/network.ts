/** Network section: which coordinator, which chain, whether it answers. */
import { errorText } from '../errors';
import { h, setAttr, setText } from './dom';
import type { Snapshot } from './model';

export class NetworkSection {
  readonly node: HTMLElement;
  private readonly status: HTMLElement;

  constructor() {
    this.status = h('div', { className: 'jp-gensyn-network', 'data-testid': 'gensyn-network' });
    this.node = h(
      'section',
      { className: 'jp-gensyn-section', 'aria-label': 'Network' },
      h('h3', { className: 'jp-gensyn-section-title' }, 'Network'),
      this.status
    );
  }

  update(snapshot: Snapshot): void {
    const health = snapshot.health;
    if (!health) {
      setText(this.status, 'loading…');
      return;
    }
    if (!health.ok) {
      setText(this.status, `error: ${errorText(health.error)}`);
      setAttr(this.status, 'data-health', 'error');
      return;
    }
    const value = health.value;
    const parts: string[] = [];
    parts.push(value.network ? `network ${value.network}` : 'no network');
    if (value.source) {
      parts.push(`(${value.source})`);
    }
    const chain = snapshot.chain;
    if (chain?.ok && chain.value) {
      parts.push(`· chain ${chain.value.chain_id}`);
    } else if (chain?.ok && value.network) {
      parts.push('· free network (no chain)');
    } else if (chain && !chain.ok) {
      parts.push(`· chain: ${errorText(chain.error)}`);
    }
    if (value.error) {
      parts.push(`· error: ${value.error}`);
    } else if (value.coordinator) {
      const c = value.coordinator;
      const online = c.providers_online !== undefined ? `, ${c.providers_online} providers online` : '';
      parts.push(`· coordinator ${c.status ?? 'ok'}${c.version ? ` ${c.version}` : ''}${online}`);
    }
    setText(this.status, parts.join(' '));
    setAttr(this.status, 'data-health', value.error ? 'error' : 'ok');
  }
}
