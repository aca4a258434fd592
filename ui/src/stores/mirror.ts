// The browser copy of the state (localStorage), and the rules for using it:
// - a readable backend state always wins and replaces the copy;
// - when the backend state is missing or unreadable and the copy holds one, the user
//   is offered to restore it (never silently); the engine validates it;
// - lineages never mix: a copy of another lineage is replaced, never merged;
// - without any backend state, the earlier installer's keys are offered for import.
// The copy never holds a secret: the state document has none by design.
import type { Snapshot } from '../bindings/Snapshot'

export const MIRROR_KEY = 'thinkube-deployment-state-v3'
export const LEGACY_KEYS = ['thinkube-deployment-state-v2', 'thinkube-deployment-state'] as const

export interface MirrorCopy {
  lineage: string
  serial: number
  savedAt: string
  document: unknown
}

export type MirrorOffer =
  | { kind: 'none' }
  | { kind: 'restore'; copy: MirrorCopy }
  | { kind: 'import'; key: string; text: string }

export function readMirror(storage: Storage): MirrorCopy | null {
  const text = storage.getItem(MIRROR_KEY)
  if (!text) return null
  try {
    const copy = JSON.parse(text) as MirrorCopy
    if (typeof copy.lineage !== 'string' || typeof copy.serial !== 'number' || !copy.document) return null
    return copy
  } catch {
    return null
  }
}

/** Applies the rules to a fresh snapshot: updates the copy, and says what to offer. */
export function reconcile(storage: Storage, snapshot: Snapshot, now = new Date()): MirrorOffer {
  const status = snapshot.status
  const doc = snapshot.document as { lineage?: string; serial?: number } | null
  if (status && doc && typeof doc.lineage === 'string') {
    const existing = readMirror(storage)
    // Never let an older snapshot of the same lineage replace a newer one.
    const older = existing && existing.lineage === doc.lineage && existing.serial > (doc.serial ?? 0)
    if (!older) {
      const copy: MirrorCopy = {
        lineage: doc.lineage,
        serial: doc.serial ?? 0,
        savedAt: now.toISOString(),
        document: doc,
      }
      storage.setItem(MIRROR_KEY, JSON.stringify(copy))
    }
    return { kind: 'none' }
  }
  const backendMissing = status !== null && doc === null
  const backendUnreadable = status === null
  if (!backendMissing && !backendUnreadable) return { kind: 'none' }
  const copy = readMirror(storage)
  if (copy) return { kind: 'restore', copy }
  if (backendMissing) {
    for (const key of LEGACY_KEYS) {
      const text = storage.getItem(key)
      if (text) return { kind: 'import', key, text }
    }
  }
  return { kind: 'none' }
}

export function clearMirror(storage: Storage): void {
  storage.removeItem(MIRROR_KEY)
  for (const key of LEGACY_KEYS) storage.removeItem(key)
}
