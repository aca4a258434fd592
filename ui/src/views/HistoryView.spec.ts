import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { HistoryListing } from '../bindings/HistoryListing'
import type { HistoryRow } from '../bindings/HistoryRow'
import type { RunRecord } from '../bindings/RunRecord'

const api = vi.hoisted(() => ({ history: vi.fn(), runDetails: vi.fn(), diffRuns: vi.fn(), planChoices: vi.fn() }))
vi.mock('../api', () => ({ api }))

import HistoryView from './HistoryView.vue'
import { allByRole, byRole } from '../test-support'
import { useInstallerStore } from '../stores/installer'
import { formatWhen } from '../time'

beforeEach(() => {
  setActivePinia(createPinia())
  for (const f of Object.values(api)) f.mockReset()
  api.planChoices.mockResolvedValue([
    { source: 'demo', builtin: true, id: 'demo', title: 'Demo deployment to this machine', description: null, problem: null },
  ])
})

/** How a run is named: its kind and when it started, in the local time. */
const nameOf = (kind: string, iso: string) => `${kind} of ${formatWhen(iso)}`

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

  it('lists runs newest first in words: kind and start, duration, outcome, plan title', async () => {
    api.history.mockResolvedValue(listing([
      row('run-1', 'failed', { duration_seconds: 42 }),
      row('run-2', 'success', { kind: 'retry', started_at: '2026-11-22T09:00:00.123456789Z' }),
      row('run-3', 'running', { finished_at: null, duration_seconds: null, plan_id: 'mine' }),
    ]))
    const w = mount(HistoryView)
    await flushPromises()
    const rows = allByRole(w, 'row').slice(1)
    expect(rows.map((r) => r.attributes('data-run'))).toEqual(['run-3', 'run-2', 'run-1'])
    const cells = rows.map((r) => r.findAll('td').slice(1).map((c) => c.text()))
    expect(cells[0]).toEqual([nameOf('Deployment', '2026-11-22T08:00:00Z'), '—', 'Running', 'mine'])
    expect(cells[1]).toEqual([nameOf('Retry', '2026-11-22T09:00:00Z'), '1 min 30 s', 'Completed', 'Demo deployment to this machine'])
    expect(cells[2]).toEqual([nameOf('Deployment', '2026-11-22T08:00:00Z'), '42 s', 'Failed', 'Demo deployment to this machine'])
    // No raw timestamps, ids or enum words.
    expect(w.text()).not.toMatch(/T0\d:|123456789|success|run-\d/)
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

  it('shows one run in detail: each attempt by step title, with its outcome, duration and error', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'failed')]))
    useInstallerStore().snapshot = {
      status: { steps: [{ id: 'a', title: 'Install packages' }] }, document: null, problem: null, running_here: false, title: '',
    } as never
    const record: RunRecord = {
      run_id: 'run-1', kind: 'deploy', deployment_id: 'd-1', started_at: '2026-11-22T08:00:00Z',
      finished_at: '2026-11-22T08:01:30Z', outcome: 'failed', plan_id: 'demo', plan_digest: null,
      configuration: { flags: {}, vars: {}, answers: {} }, enabled_flags: ['gpu'], program: 'thinkube-deploy 0.1.0',
      steps_attempted: [
        { step: 'a', attempt: 1, outcome: 'success', started_at: '2026-11-22T08:00:00Z', finished_at: '2026-11-22T08:01:05Z' },
        { step: 'b', attempt: 1, outcome: 'failed', started_at: '2026-11-22T08:01:05Z', finished_at: '2026-11-22T08:01:30Z', error: { message: 'apt is locked' } as never },
      ],
    }
    api.runDetails.mockResolvedValue(record)
    const w = mount(HistoryView)
    await flushPromises()
    const name = nameOf('Deployment', '2026-11-22T08:00:00Z')
    await byRole(w, 'button', name).trigger('click')
    await flushPromises()
    expect(api.runDetails).toHaveBeenCalledWith('run-1')
    const details = byRole(w, 'region', name)
    expect(byRole(details, 'heading').text()).toBe(`${name}: Failed`)
    expect(details.text()).toContain('Flags on')
    expect(details.text()).toContain('gpu')
    expect(details.text()).toContain('Demo deployment to this machine')
    expect(texts(details, 'tbody tr')).toEqual(['Install packages1Completed1 min 05 s', 'bapt is locked1Failed25 s'])
  })

  it('compares exactly two chosen runs', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'failed'), row('run-2', 'success'), row('run-3', 'success')]))
    api.diffRuns.mockResolvedValue({
      run_a: 'run-3', run_b: 'run-2', differences: [
        { field: 'flags.gpu', a: true, b: false },
        { field: 'vars.demo_port', a: '8765', b: null },
        { field: 'plan_id', a: 'demo', b: 'mine' },
        { field: 'steps.report', a: 'failed', b: null },
      ],
    })
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
    const name = nameOf('Deployment', '2026-11-22T08:00:00Z')
    expect(byRole(diff, 'heading').text()).toBe(`${name} ↔ ${name}`)
    const cells = allByRole(diff, 'row').slice(1).map((r) => r.findAll('td').map((c) => c.text()))
    expect(cells).toEqual([
      ['Flag gpu', 'on', 'off'],
      ['Variable demo_port', '8765', '—'],
      ['Plan', 'Demo deployment to this machine', 'mine'],
      ['Step report', 'Failed', 'not run'],
    ])
  })

  it('says so when two runs do not differ', async () => {
    api.history.mockResolvedValue(listing([row('run-1', 'success'), row('run-2', 'success')]))
    api.diffRuns.mockResolvedValue({ run_a: 'run-2', run_b: 'run-1', differences: [] })
    const w = mount(HistoryView)
    await flushPromises()
    for (const box of allByRole(w, 'checkbox')) await box.setValue(true)
    await byRole(w, 'button', 'Compare the two chosen runs').trigger('click')
    await flushPromises()
    expect(byRole(w, 'region', 'Differences between runs').text()).toContain('No differences in plan, configuration or outcomes.')
  })
})
