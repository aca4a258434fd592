import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { RunEvent } from '../bindings/RunEvent'

const api = vi.hoisted(() => ({ stepTimings: vi.fn() }))
vi.mock('../api', () => ({ api }))

import { LIVE_LINES, useInstallerStore } from './installer'
import { MIRROR_KEY } from './mirror'
import { snapshot, step } from '../test-support'

const started = (step: string, attempt = 1) =>
  ({ type: 'progress', progress: { type: 'step_started', run_id: 'r', step, title: step, phase: 'p', attempt, index: 0, total: 2 } }) as RunEvent

beforeEach(() => {
  setActivePinia(createPinia())
  api.stepTimings.mockReset()
  api.stepTimings.mockResolvedValue({ plan_id: 'demo', seconds: {}, runs: 0 })
})

describe('the live log in the store', () => {
  // The page kept every line of the run: its memory grew with the run's output.
  it('keeps at most the last LIVE_LINES lines of the running step, counting those dropped', () => {
    const store = useInstallerStore()
    store.onEvent(started('a'))
    const batch = Array.from({ length: 2000 }, (_, i) => `l${i}`)
    for (let b = 0; b < 50; b++) store.onEvent({ type: 'log', step: 'a', lines: batch.map((l) => `${b}-${l}`) })
    const kept = store.logs.a!
    expect(kept.length).toBeLessThanOrEqual(LIVE_LINES * 1.25)
    expect(kept.length + store.logDropped.a!).toBe(100_000)
    expect(kept[kept.length - 1]).toBe('49-l1999')
    expect(kept[0]).toBe(`${Math.floor(store.logDropped.a! / 2000)}-l${store.logDropped.a! % 2000}`)
  })

  it('drops the earlier step\'s lines when the next starts (its log is on disk), and knows the live attempt', () => {
    const store = useInstallerStore()
    store.onEvent(started('a'))
    store.onEvent({ type: 'log', step: 'a', lines: ['from a'] })
    store.onEvent(started('b', 3))
    expect(store.logs.a).toBeUndefined()
    expect(store.logs.b).toEqual([])
    expect(store.liveAttempt).toEqual({ b: 3 })
    expect(store.logStep).toBe('b')
  })

  it('reads the step timings again when a run starts and ends', () => {
    const store = useInstallerStore()
    store.onEvent({ type: 'progress', progress: { type: 'run_started', run_id: 'r', plan_id: 'demo', total: 1, done: 0 } })
    store.onEvent({ type: 'ended', ended: { kind: 'completed', message: 'All steps completed.', error: null } })
    expect(api.stepTimings).toHaveBeenCalledTimes(2)
  })

  it('keeps the running step\'s task counts until the next step starts', () => {
    const store = useInstallerStore()
    store.onEvent(started('a'))
    const tally = { play: null, task: 'Install', tasks: 1, hosts: {} }
    store.onEvent({ type: 'tasks', step: 'a', tally })
    expect(store.tally).toEqual({ step: 'a', tally })
    store.onEvent(started('b'))
    expect(store.tally).toBeNull()
  })

})

describe('state changes during a run', () => {
  it('patches the steps sent and keeps the others, without touching the browser copy', () => {
    localStorage.clear()
    const store = useInstallerStore()
    store.onEvent({ type: 'state', snapshot: snapshot([step('a', 'running'), step('b', 'pending')], { serial: 5 }) })
    const b = store.status!.steps[1]
    const saved = localStorage.getItem(MIRROR_KEY)
    expect(saved).not.toBeNull()
    const progress = { ...store.status!.progress, completed: 1, running: 0, percentage: 50 }
    store.onEvent({
      type: 'change',
      change: {
        serial: 6, deployment: store.status!.deployment, progress, current_run: null, lock: store.status!.lock,
        steps: [step('a', 'completed')], title: 'Thinkube Installer — 50% (1 of 2 steps, in progress)',
      },
    })
    expect(store.status!.serial).toBe(6)
    expect(store.status!.steps.map((s) => s.status)).toEqual(['completed', 'pending'])
    expect(store.status!.steps[1]).toBe(b)
    expect(store.status!.progress.percentage).toBe(50)
    expect(document.title).toBe('Thinkube Installer — 50% (1 of 2 steps, in progress)')
    expect(localStorage.getItem(MIRROR_KEY)).toBe(saved)
  })
})
