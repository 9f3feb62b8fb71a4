/** Providers section: who offers GPUs on the network. */
import type { Provider } from '../types';
import { sectionErrorText } from '../errors';
import { h, setAttr, setText, syncList } from './dom';
import type { Snapshot } from './model';

/** `cuda: 2x H100` or `cpu (16 cores)`. */
export function deviceText(provider: Provider): string {
  const info = provider.info;
  const gpus = info.gpus ?? [];
  if (gpus.length > 0) {
    const names = new Map<string, number>();
    for (const gpu of gpus) {
      names.set(gpu.name, (names.get(gpu.name) ?? 0) + 1);
    }
    return `${info.device_type}: ${Array.from(names, ([name, n]) => `${n}x ${name}`).join(', ')}`;
  }
  return info.cpu_count ? `${info.device_type} (${info.cpu_count} cores)` : info.device_type;
}

export class ProvidersSection {
  readonly node: HTMLElement;
  readonly list: HTMLElement;
  readonly empty: HTMLElement;
  private readonly items = new Map<string, HTMLElement>();
  private providers: Provider[] = [];

  constructor() {
    this.list = h('ul', { className: 'jp-gensyn-list', 'aria-label': 'Providers' });
    this.empty = h('div', { className: 'jp-gensyn-detail' });
    this.node = h(
      'section',
      { className: 'jp-gensyn-section', 'aria-label': 'Providers' },
      h('h3', { className: 'jp-gensyn-section-title' }, 'Providers'),
      h('div', { 'data-testid': 'gensyn-providers' }, this.empty, this.list)
    );
  }

  update(snapshot: Snapshot): void {
    const providers = snapshot.providers;
    if (!providers) {
      setText(this.empty, 'loading…');
      return;
    }
    if (!providers.ok) {
      setText(this.empty, `providers: ${sectionErrorText(providers.error)}`);
    } else {
      this.providers = providers.value;
      setText(this.empty, providers.value.length === 0 ? 'no providers registered' : '');
    }
    syncList(
      this.list,
      this.providers,
      p => p.id,
      p =>
        h('li', {
          className: 'jp-gensyn-item',
          'data-testid': 'gensyn-provider',
          'data-provider-id': p.id
        }),
      (el, p) => {
        setAttr(el, 'data-state', p.state);
        const parts = [p.info.name, deviceText(p), p.state, p.address ?? 'no address'];
        if (p.tasks_done) {
          parts.push(`${p.tasks_done} done`);
        }
        setText(el, parts.join(' · '));
      },
      this.items
    );
  }
}
