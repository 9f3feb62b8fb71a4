/** Small plain-DOM helpers shared by the panel's sections. */

type Attrs = Record<string, string | boolean | undefined>;

/** Create an element with attributes (`true` sets an empty attribute, `false`/undefined none). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (name === 'className') {
      el.className = value === true ? '' : value;
    } else {
      el.setAttribute(name, value === true ? '' : value);
    }
  }
  el.append(...children);
  return el;
}

/** A real `<button type="button">` with a visible label and a test id. */
export function button(
  label: string,
  testid: string,
  onClick: (event: MouseEvent) => void,
  title?: string
): HTMLButtonElement {
  const el = h('button', {
    type: 'button',
    className: 'jp-gensyn-button',
    'data-testid': testid,
    title
  });
  el.textContent = label;
  el.addEventListener('click', onClick);
  return el;
}

/** Set `textContent` only when it changed (keeps selection and avoids layout work). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
}

/** Set or remove an attribute only when it changed. */
export function setAttr(el: Element, name: string, value: string | null): void {
  if (value === null) {
    if (el.hasAttribute(name)) {
      el.removeAttribute(name);
    }
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

/**
 * Make `container`'s children the elements of `items`, by key: existing
 * elements are updated in place (so a focused button keeps its focus while
 * the panel refreshes), new ones created, gone ones removed, order kept.
 */
export function syncList<T, E extends HTMLElement>(
  container: HTMLElement,
  items: readonly T[],
  key: (item: T) => string,
  create: (item: T) => E,
  update: (el: E, item: T) => void,
  cache: Map<string, E>
): void {
  const seen = new Set<string>();
  let previous: Element | null = null;
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) {
      continue;
    }
    seen.add(k);
    let el = cache.get(k);
    if (!el) {
      el = create(item);
      cache.set(k, el);
    }
    update(el, item);
    const expected: Element | null = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== el) {
      container.insertBefore(el, expected);
    }
    previous = el;
  }
  for (const [k, el] of cache) {
    if (!seen.has(k)) {
      el.remove();
      cache.delete(k);
    }
  }
}
