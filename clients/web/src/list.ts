// A list that loads its next page when the reader scrolls near its end (or presses "Load more").
import { h } from "./dom";
import { showError } from "./app";

export interface Source<T> {
  /** The next items, and whether there are more after them. */
  next(): Promise<{ items: T[]; more: boolean }>;
}

/** Pages fetched with a cursor. */
export function pagedSource<T>(
  load: (cursor: string | undefined) => Promise<{ items: readonly T[]; nextCursor: string | null }>,
): Source<T> {
  let cursor: string | undefined;
  return {
    async next() {
      const page = await load(cursor);
      cursor = page.nextCursor ?? undefined;
      return { items: [...page.items], more: Boolean(cursor) };
    },
  };
}

/** An async iterator read `size` items at a time. */
export function iteratorSource<T>(iterable: AsyncIterable<T>, size = 20): Source<T> {
  const iterator = iterable[Symbol.asyncIterator]();
  return {
    async next() {
      const items: T[] = [];
      while (items.length < size) {
        const result = await iterator.next();
        if (result.done) return { items, more: false };
        items.push(result.value);
      }
      return { items, more: true };
    },
  };
}

export interface ListOptions<T> {
  label: string;
  source: Source<T>;
  key: (item: T) => string;
  render: (item: T) => HTMLElement;
  empty: string;
  end?: string;
}

export class InfiniteList<T> {
  readonly element: HTMLElement;
  readonly list: HTMLOListElement;
  private readonly keys = new Set<string>();
  private readonly status: HTMLElement;
  private readonly moreButton: HTMLButtonElement;
  private readonly observer: IntersectionObserver;
  private loading = false;
  private more = true;
  private failed = false;

  constructor(private readonly options: ListOptions<T>) {
    this.list = h("ol", { class: "items", "aria-label": options.label });
    this.status = h("p", { class: "list-status", role: "status" });
    this.moreButton = h("button", { type: "button", class: "secondary", onclick: () => void this.load() }, "Load more");
    const footer = h("div", { class: "list-footer" }, this.status, this.moreButton);
    this.element = h("div", { class: "infinite-list" }, this.list, footer);
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting) && !this.failed) void this.load();
      },
      { rootMargin: "0px 0px 800px 0px" },
    );
    this.observer.observe(footer);
    this.update();
  }

  /** Every page is loaded. */
  get complete(): boolean {
    return !this.more;
  }

  get size(): number {
    return this.keys.size;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** Loads the next page unless one is loading or there is none. */
  async load(): Promise<void> {
    if (this.loading || !this.more) return;
    this.loading = true;
    this.failed = false;
    this.update();
    try {
      const { items, more } = await this.options.source.next();
      this.more = more;
      this.append(items);
    } catch (error) {
      this.failed = true;
      showError(this.status, error);
    } finally {
      this.loading = false;
      this.update();
    }
    if (this.more && !this.failed && this.element.isConnected) {
      // Still near the end (a short page, a tall screen): the observer fires again on re-observe.
      const footer = this.moreButton.parentElement!;
      this.observer.unobserve(footer);
      this.observer.observe(footer);
    }
  }

  append(items: T[]): void {
    for (const item of items) {
      const key = this.options.key(item);
      if (this.keys.has(key)) continue;
      this.keys.add(key);
      this.list.append(this.row(key, item));
    }
    this.update();
  }

  /** Puts items (newest first) above the others. */
  prepend(items: T[]): void {
    const fresh = items.filter((item) => !this.keys.has(this.options.key(item)));
    const rows = fresh.map((item) => {
      const key = this.options.key(item);
      this.keys.add(key);
      return this.row(key, item);
    });
    this.list.prepend(...rows);
    this.update();
  }

  remove(key: string): void {
    this.keys.delete(key);
    this.list.querySelector(`:scope > li[data-key="${CSS.escape(key)}"]`)?.remove();
    this.update();
  }

  destroy(): void {
    this.observer.disconnect();
  }

  private row(key: string, item: T): HTMLLIElement {
    return h("li", { "data-key": key }, this.options.render(item));
  }

  private update(): void {
    this.moreButton.hidden = this.loading || !this.more;
    this.moreButton.textContent = this.failed ? "Try again" : "Load more";
    this.element.setAttribute("aria-busy", String(this.loading));
    if (this.failed) return;
    this.status.hidden = false;
    if (this.loading) this.status.textContent = "Loading…";
    else if (!this.more) this.status.textContent = this.keys.size ? (this.options.end ?? "") : this.options.empty;
    else this.status.textContent = "";
  }
}
