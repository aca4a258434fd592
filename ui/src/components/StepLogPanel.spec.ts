import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { AttemptView } from '../bindings/AttemptView'
import { byLabel, byRole, step } from '../test-support'

const api = vi.hoisted(() => ({ stepLog: vi.fn(), saveStepLog: vi.fn() }))
vi.mock('../api', () => ({ api }))

import StepLogPanel from './StepLogPanel.vue'

const NOW = Date.parse('2026-12-04T10:00:00Z')
const attempt = (number: number, outcome: AttemptView['outcome'], secs: number): AttemptView => ({
  number, outcome, started_at: '2026-12-04T09:00:00Z',
  finished_at: outcome === 'running' ? null : new Date(Date.parse('2026-12-04T09:00:00Z') + secs * 1000).toISOString(),
  has_log: true,
})
const page = (attempt: number, lines: string[], over = {}) => ({
  step: 'a', attempt, attempts: 2, outcome: 'failed', run_id: 'r1', started_at: null, finished_at: null,
  start: 0, end: 100, size: 100, lines, file: `/h/logs/r1/a-${attempt}.log`, missing: null, ...over,
})
const twoAttempts = step('a', 'failed', { attempts: 2, attempt_list: [attempt(1, 'failed', 5), attempt(2, 'failed', 75)] })

beforeEach(() => {
  api.stepLog.mockReset()
  api.saveStepLog.mockReset()
})

describe('StepLogPanel', () => {
  // After a relaunch, or for an earlier attempt, the log said "No output yet" though
  // it was on disk.
  it('reads the last attempt from its file, says which it is, and shows an earlier one when picked', async () => {
    api.stepLog.mockImplementation(async (_s: string, n: number) => page(n, [`output of attempt ${n}`]))
    const w = mount(StepLogPanel, { props: { step: twoAttempts, live: null, now: NOW } })
    await flushPromises()
    expect(api.stepLog).toHaveBeenCalledWith('a', 2, null, null)
    expect(byRole(w, 'heading', 'Log of Title a — attempt 2 of 2').exists()).toBe(true)
    expect(w.find('[data-testid=log-attempt-state]').text()).toBe('failed, in 1 min 15 s')
    expect(w.find('[role=log]').text()).toContain('output of attempt 2')
    expect(w.text()).toContain('/h/logs/r1/a-2.log')

    await byLabel(w, /Attempt/).setValue('1')
    await flushPromises()
    expect(api.stepLog).toHaveBeenLastCalledWith('a', 1, null, null)
    expect(byRole(w, 'heading', 'Log of Title a — attempt 1 of 2').exists()).toBe(true)
    expect(w.find('[data-testid=log-attempt-state]').text()).toBe('failed, in 5 s')
    expect(w.find('[role=log]').text()).toContain('output of attempt 1')
    expect(w.find('[role=log]').text()).not.toContain('output of attempt 2')
  })

  it('walks back through a long log a page at a time, numbering lines once it reaches the start', async () => {
    api.stepLog
      .mockResolvedValueOnce(page(2, ['late 1', 'late 2'], { start: 4096, end: 8192, size: 8192 }))
      .mockResolvedValueOnce(page(2, ['early 1'], { start: 0, end: 4096, size: 8192 }))
    const w = mount(StepLogPanel, { props: { step: twoAttempts, live: null, now: NOW } })
    await flushPromises()
    expect(w.find('.run-log-line .n').text(), 'the first line shown is not the first of the log').toBe('')
    await byRole(w, 'button', 'Show earlier output').trigger('click')
    await flushPromises()
    expect(api.stepLog).toHaveBeenLastCalledWith('a', 2, 4096, null)
    expect(w.findAll('.run-log-line').map((l) => l.text())).toEqual(['1early 1', '2late 1', '3late 2'])
    expect(w.findAll('button').map((b) => b.text())).not.toContain('Show earlier output')
  })

  it('says why there is no log, and shows an error reading it as it is', async () => {
    api.stepLog.mockResolvedValueOnce(page(2, [], { missing: 'The log logs/r1/a-2.log is no longer there.' }))
    const w = mount(StepLogPanel, { props: { step: twoAttempts, live: null, now: NOW } })
    await flushPromises()
    expect(w.find('[data-testid=log-missing]').text()).toContain('no longer there')

    api.stepLog.mockRejectedValueOnce({ code: 'io', message: 'could not read the log: permission denied' })
    await byLabel(w, /Attempt/).setValue('1')
    await flushPromises()
    expect(byRole(w, 'alert').text()).toBe('could not read the log: permission denied')
  })

  it('shows the live lines of the attempt this window runs, without reading the file', async () => {
    const running = step('a', 'running', { attempt_list: [attempt(1, 'running', 0)] })
    const live = { attempt: 1, lines: ['one', 'two'], version: 1, dropped: 0, limit: 20000 }
    const w = mount(StepLogPanel, { props: { step: running, live, now: Date.parse('2026-12-04T09:00:42Z') } })
    await flushPromises()
    expect(api.stepLog).not.toHaveBeenCalled()
    expect(w.find('[data-testid=log-count]').text()).toBe('2 lines')
    expect(w.find('[data-testid=log-attempt-state]').text()).toBe('running, for 42 s')
  })

  it('says when the live lines are trimmed, numbers them from where they start, and reads the whole log when asked', async () => {
    const running = step('a', 'running', { attempt_list: [attempt(1, 'running', 0)] })
    const live = { attempt: 1, lines: ['kept'], version: 1, dropped: 20000, limit: 20000 }
    api.stepLog.mockResolvedValue(page(1, ['from the file'], { outcome: 'running' }))
    const w = mount(StepLogPanel, { props: { step: running, live, now: NOW } })
    expect(w.find('[data-testid=log-trimmed]').text()).toContain('keeps the last 20,000 lines')
    expect(w.find('.run-log-line .n').text()).toBe('20001')
    await byRole(w, 'button', 'Show the whole log').trigger('click')
    await flushPromises()
    expect(api.stepLog).toHaveBeenCalledWith('a', 1, null, null)
    expect(w.find('[role=log]').text()).toContain('from the file')
    await byRole(w, 'button', 'Back to the live output').trigger('click')
    expect(w.find('[role=log]').text()).toContain('kept')
  })

  it('lists the live attempt before the state that records it arrives', () => {
    const before = step('a', 'pending', { attempt_list: [] })
    const live = { attempt: 1, lines: ['first line'], version: 1, dropped: 0, limit: 20000 }
    const w = mount(StepLogPanel, { props: { step: before, live, now: NOW } })
    expect(byRole(w, 'heading', 'Log of Title a — attempt 1 of 1').exists()).toBe(true)
    expect(w.find('[role=log]').text()).toContain('first line')
  })

  it('saves a copy of the shown attempt\'s whole log and says where, or why not', async () => {
    api.stepLog.mockImplementation(async (_s: string, n: number) => page(n, [`output of attempt ${n}`]))
    api.saveStepLog.mockResolvedValueOnce({ path: '/home/u/Downloads/thinkube-a-attempt-1.log', bytes: 20 })
    const w = mount(StepLogPanel, { props: { step: twoAttempts, live: null, now: NOW } })
    await flushPromises()
    await byLabel(w, /Attempt/).setValue('1')
    await flushPromises()
    await byRole(w, 'button', 'Save a copy').trigger('click')
    await flushPromises()
    expect(api.saveStepLog).toHaveBeenCalledTimes(1)
    expect(api.saveStepLog).toHaveBeenCalledWith('a', 1)
    expect(w.find('[data-testid=log-saved]').text()).toBe(
      'Saved a copy of the whole log to /home/u/Downloads/thinkube-a-attempt-1.log',
    )

    await byLabel(w, /Attempt/).setValue('2')
    await flushPromises()
    expect(w.find('[data-testid=log-saved]').exists(), 'the note belongs to the attempt it was saved from').toBe(false)
    api.saveStepLog.mockRejectedValueOnce({ code: 'io', message: 'could not save a copy of the log /home/u/x.log: No space left on device' })
    await byRole(w, 'button', 'Save a copy').trigger('click')
    await flushPromises()
    expect(byRole(w, 'alert').text()).toBe('Could not save a copy: could not save a copy of the log /home/u/x.log: No space left on device')
  })

  it('offers no copy of a log that is not there', async () => {
    api.stepLog.mockResolvedValueOnce(page(2, [], { missing: 'The log logs/r1/a-2.log is no longer there.' }))
    const w = mount(StepLogPanel, { props: { step: twoAttempts, live: null, now: NOW } })
    await flushPromises()
    expect(w.findAll('button').map((b) => b.text())).not.toContain('Save a copy')
  })

  it('saves the live attempt as far as it has printed', async () => {
    const running = step('a', 'running', { attempt_list: [attempt(1, 'running', 0)] })
    const live = { attempt: 1, lines: ['one'], version: 1, dropped: 0, limit: 20000 }
    api.saveStepLog.mockResolvedValueOnce({ path: '/d/thinkube-a-attempt-1.log', bytes: 4 })
    const w = mount(StepLogPanel, { props: { step: running, live, now: NOW } })
    await byRole(w, 'button', 'Save a copy').trigger('click')
    await flushPromises()
    expect(api.saveStepLog).toHaveBeenCalledWith('a', 1)
    expect(w.find('[data-testid=log-saved]').text()).toContain('/d/thinkube-a-attempt-1.log')
  })
})
