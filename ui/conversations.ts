// Chat conversations, kept in the browser (localStorage) and exportable as JSON.

import type { ChatMessage } from './api.js';

export interface Turn extends ChatMessage {
  model?: string; // the model that answered (assistant turns)
  stopped?: boolean; // the user stopped it mid-stream
  error?: string;
}

export interface Conversation {
  id: string;
  title: string; // the first user message, shortened
  model: string;
  turns: Turn[];
  updated: number; // Date.now()
}

const KEY = 'llama-adapter.conversations';

export function loadConversations(): Conversation[] {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? '[]') as unknown;
    return Array.isArray(v) ? (v as Conversation[]) : [];
  } catch {
    return []; // unreadable: start afresh rather than fail the page
  }
}

export function saveConversations(cs: Conversation[]): void {
  localStorage.setItem(KEY, JSON.stringify(cs));
}

export function newConversation(model: string): Conversation {
  // crypto.randomUUID exists only in secure contexts (https, localhost): not on http://LAN-address
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  return { id, title: 'New conversation', model, turns: [], updated: Date.now() };
}

/** Offer `data` as a downloaded JSON file. */
export function downloadJson(name: string, data: unknown): void {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
