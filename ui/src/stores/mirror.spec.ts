import { beforeEach, describe, expect, it } from 'vitest'
import { MIRROR_KEY, clearMirror, readMirror, reconcile } from './mirror'
import { emptySnapshot, snapshot, step } from '../test-support'
import type { Snapshot } from '../bindings/Snapshot'

const unreadable = (): Snapshot => ({
  status: null, document: null, running_here: false, title: 'Thinkube Installer',
  problem: { code: 'unreadable', message: 'the state file cannot be read' },
})

describe('the browser copy', () => {
  beforeEach(() => localStorage.clear())

  it('is replaced by a readable backend state', () => {
    localStorage.setItem(MIRROR_KEY, JSON.stringify({ lineage: 'old', serial: 99, savedAt: 'x', document: { a: 1 } }))
    expect(reconcile(localStorage, snapshot([step('a', 'completed')], { lineage: 'new', serial: 3 }))).toEqual({ kind: 'none' })
    expect(readMirror(localStorage)).toMatchObject({ lineage: 'new', serial: 3 })
  })

  it('is never rolled back by an older snapshot of the same lineage', () => {
    reconcile(localStorage, snapshot([], { serial: 9 }))
    reconcile(localStorage, snapshot([], { serial: 4 }))
    expect(readMirror(localStorage)?.serial).toBe(9)
  })

  it('is offered for restore when the backend state is missing, never applied silently', () => {
    reconcile(localStorage, snapshot([step('a', 'completed')], { serial: 7 }))
    const offer = reconcile(localStorage, emptySnapshot())
    expect(offer.kind).toBe('restore')
    expect(offer.kind === 'restore' && offer.copy.serial).toBe(7)
  })

  it('is offered for restore when the backend state is unreadable', () => {
    reconcile(localStorage, snapshot([], { serial: 2 }))
    expect(reconcile(localStorage, unreadable()).kind).toBe('restore')
  })

  it('offers the earlier installer keys only when no backend state exists', () => {
    localStorage.setItem('thinkube-deployment-state-v2', '{"version":2}')
    expect(reconcile(localStorage, emptySnapshot())).toEqual({
      kind: 'import', key: 'thinkube-deployment-state-v2', text: '{"version":2}',
    })
    expect(reconcile(localStorage, snapshot([]))).toEqual({ kind: 'none' })
  })

  it('ignores a damaged copy and clears every key', () => {
    localStorage.setItem(MIRROR_KEY, '{not json')
    expect(reconcile(localStorage, emptySnapshot())).toEqual({ kind: 'none' })
    localStorage.setItem('thinkube-deployment-state', '{}')
    clearMirror(localStorage)
    expect(localStorage.length).toBe(0)
  })
})
