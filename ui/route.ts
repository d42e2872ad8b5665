// Hash routing: #/chat?model=ID, #/compare, #/adapters, #/finetune, #/local.

export const PAGES = [
  { path: 'chat', title: 'Chat' },
  { path: 'compare', title: 'Compare' },
  { path: 'adapters', title: 'Adapters' },
  { path: 'finetune', title: 'Fine-tuning' },
  { path: 'local', title: 'In the browser' },
] as const;
export type PagePath = (typeof PAGES)[number]['path'];

export interface Route {
  page: PagePath;
  params: URLSearchParams;
}

export function parseHash(): Route {
  const [p, q] = location.hash.replace(/^#\/?/, '').split('?');
  const page = PAGES.find((x) => x.path === p)?.path ?? 'chat';
  return { page, params: new URLSearchParams(q ?? '') };
}

/** Go to a page (e.g. navigate('chat', {model: id})). */
export function navigate(page: PagePath, params: Record<string, string> = {}): void {
  const q = new URLSearchParams(params).toString();
  location.hash = `#/${page}${q ? `?${q}` : ''}`;
}
