/** The panel's message line: the last action's error or success. */
import { errorText } from '../errors';
import { h } from './dom';

export type MessageKind = 'info' | 'success' | 'error';

export class MessageLine {
  readonly node: HTMLElement;

  constructor() {
    this.node = h('div', {
      className: 'jp-gensyn-message',
      'data-testid': 'gensyn-panel-message',
      role: 'status',
      'aria-live': 'polite'
    });
  }

  /** The text shown now. */
  get text(): string {
    return this.node.textContent ?? '';
  }

  /** The kind of the text shown now (`data-kind`), or null when empty. */
  get kind(): MessageKind | null {
    return (this.node.getAttribute('data-kind') as MessageKind | null) ?? null;
  }

  show(text: string, kind: MessageKind = 'info'): void {
    this.node.textContent = text;
    this.node.setAttribute('data-kind', kind);
    this.node.classList.toggle('jp-gensyn-mod-error', kind === 'error');
    this.node.classList.toggle('jp-gensyn-mod-success', kind === 'success');
  }

  success(text: string): void {
    this.show(text, 'success');
  }

  error(error: unknown): void {
    this.show(errorText(error), 'error');
  }

  clear(): void {
    this.node.textContent = '';
    this.node.removeAttribute('data-kind');
    this.node.classList.remove('jp-gensyn-mod-error', 'jp-gensyn-mod-success');
  }
}
