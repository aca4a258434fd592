import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { HistoryListing } from '../bindings/HistoryListing'
import type { HistoryRow } from '../bindings/HistoryRow'
import type { RunRecord } from '../bindings/RunRecord'

const api = vi.hoisted(() => ({ history: vi.fn(), runDetails: vi.fn(), diffRuns: vi.fn() }))
vi.mock('../api', () => ({ api }))

import HistoryView from './HistoryView.vue'
import { allByRole, byRole } from '../test-support'

beforeEach(() => {
  for (const f of Object.values(api)) f.mockReset()
})

function row(run_id: string, outcome: HistoryRow['outcome'], extra: Partial<HistoryRow> = {}): HistoryRow {
  return {
    run_id, kind: 'deploy', deployment_id: 'd-1', started_at: '2026-11-22T08:00:00Z', finished_at: '2026-11-22T08:01:30Z',
    duration_seconds: 90, outcome, plan_id: 'demo', flags: [], steps_attempted: 2, ...extra,
  }
}

function listing(rows: HistoryRow[], unreadable: HistoryListing['unreadable'] = []): HistoryListing {
  return { rows, unreadable }
}

const texts = (w: { findAll: (s: string) => { text: () => string }[] }, selector: string) => w.findAll(selector).map((e) => e.text())

describe('HistoryView', () => {
  it('says it is loading until the history arrives', async () => {
    let answer: (l: HistoryListing) => void = () => {}
    api.history.mockReturnValue(new Promise((ok) => (answer = ok)))
    const w = mount(HistoryView)
    expect(byRole(w, 'status').text()).toBe('Loading the history…')
    answer(listing([]))
    await flushPromises()
    expect(allByRole(w, 'status')).toHaveLength(0)
    expect(w.text()).toContain('No runs yet.')
    expect(allByRole(w, 'table')).toHaveLength(0)
  })

  it('shows the error the backend gave, as it is', async () => {
    api.history.mockRejectedValue({ code: 'unreadable_state', message: 'the state file is damaged: run recover' })
    const w = mount(HistoryView)
    await flushPromises()
    expect(byRole(w, 'alert').text()).toBe('the state file is damaged: run recover')
    expect(allByRole(w, 'table')).toHaveLength(0)
  })

  it('lists runs newest first with outcome and duration', async () => {
    api.history.mockResolvedValue(listing([
      row('run-1', 'failed', { duration_seconds: 42 }),
      row('run-2', 'success'),
      row('run-3', 'running', { finished_at: null, duration_seconds: null }),
    ]))
    const w = mount(HistoryView)
    await flushPromises()
    const rows = w.findAll('tbody tr')
    expect(rows.map((r) => r.attributes('data-run'))).toEqual(['run-3', 'run-2', 'run-1'])
    expect(rows[0]!.text()).toContain('—')
    expect(rows[1]!.text()).toContain('1 min 30 s')
    expect(rows[2]!.find('[data-outcome]').text()).toBe('failed')
    expect(rows[2]!.text()).toContain('42 s')
  })

  it('names run files it could not read, beside the runs it could', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'success')], [
      { path: '/h/runs/run-torn.json', problem: 'EOF while parsing an object at line 1 column 31' },
    ]))
    const w = mount(HistoryView)
    await flushPromises()
    const warning = byRole(w, 'alert')
    expect(warning.text()).toContain('/h/runs/run-torn.json: EOF while parsing')
    expect(warning.text()).toContain('left as they are')
    expect(w.findAll('tbody tr')).toHaveLength(1)
  })

  it('shows one run in detail, with each attempt and its error', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'failed')]))
    const record: RunRecord = {
      run_id: 'run-1', kind: 'deploy', deployment_id: 'd-1', started_at: '2026-11-22T08:00:00Z',
      finished_at: '2026-11-22T08:01:30Z', outcome: 'failed', plan_id: 'demo', plan_digest: null,
      configuration: { flags: {}, vars: {}, answers: {} }, enabled_flags: ['gpu'], program: 'thinkube-deploy 0.1.0',
      steps_attempted: [
        { step: 'a', attempt: 1, outcome: 'completed' as never, started_at: null, finished_at: null },
        { step: 'b', attempt: 1, outcome: 'failed' as never, started_at: null, finished_at: null, error: { message: 'apt is locked' } as never },
      ],
    }
    api.runDetails.mockResolvedValue(record)
    const w = mount(HistoryView)
    await flushPromises()
    await byRole(w, 'button', 'run-1').trigger('click')
    await flushPromises()
    expect(api.runDetails).toHaveBeenCalledWith('run-1')
    const details = byRole(w, 'region', 'Run run-1')
    expect(byRole(details, 'heading').text()).toBe('Run run-1')
    expect(details.text()).toContain('flags gpu')
    expect(texts(details, 'li')).toEqual(['a (attempt 1): completed', 'b (attempt 1): failed — apt is locked'])
  })

  it('compares exactly two chosen runs', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'failed'), row('run-2', 'success'), row('run-3', 'success')]))
    api.diffRuns.mockResolvedValue({ run_a: 'run-3', run_b: 'run-2', differences: [{ field: 'flags', a: ['gpu'], b: [] }] })
    const w = mount(HistoryView)
    await flushPromises()
    const compare = byRole(w, 'button', 'Compare the two chosen runs')
    expect(compare.attributes('disabled')).toBeDefined()
    const boxes = allByRole(w, 'checkbox')
    await boxes[0]!.setValue(true)
    await boxes[1]!.setValue(true)
    // A third cannot be chosen while two are.
    expect(boxes[2]!.attributes('disabled')).toBeDefined()
    expect(compare.attributes('disabled')).toBeUndefined()
    await compare.trigger('click')
    await flushPromises()
    expect(api.diffRuns).toHaveBeenCalledWith('run-3', 'run-2')
    const diff = byRole(w, 'region', 'Differences between runs')
    expect(byRole(diff, 'heading').text()).toBe('run-3 ↔ run-2')
    expect(texts(diff, 'tbody tr')).toEqual(['flags["gpu"][]'])
  })

  it('says so when two runs do not differ', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'success'), row('run-2', 'success')]))
    api.diffRuns.mockResolvedValue({ run_a: 'run-2', run_b: 'run-1', differences: [] })
    const w = mount(HistoryView)
    await flushPromises()
    for (const box of allByRole(w, 'checkbox')) await box.setValue(true)
    await byRole(w, 'button', 'Compare the two chosen runs').trigger('click')
    await flushPromises()
    expect(byRole(w, 'region', 'Differences between runs').text()).toContain('No differences.')
  })
})
