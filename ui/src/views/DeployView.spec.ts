import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { nextTick } from 'vue'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { RunEvent } from '../bindings/RunEvent'
import type { ReadinessAttempt } from '../bindings/ReadinessAttempt'
import { byLabel, byRole, snapshot, step } from '../test-support'

const api = vi.hoisted(() => ({
  launchInfo: vi.fn(), getState: vi.fn(), backendRetry: vi.fn(), startRun: vi.fn(), cancelRun: vi.fn(),
  cleanState: vi.fn(), restoreMirror: vi.fn(), facts: vi.fn(), validate: vi.fn(), runTokens: vi.fn(),
  stepLog: vi.fn(), stepTimings: vi.fn(),
}))
vi.mock('../api', () => ({ api }))

import DeployView from './DeployView.vue'
import { useInstallerStore } from '../stores/installer'

const launch = (over = {}) => ({
  skip_config: false, clean_state: false, clean_state_result: null, clean_state_error: null,
  environment: 'default', home: '/h', plan: null, builtin_plans: ['demo'], program: 'x', ...over,
})

beforeEach(() => {
  setActivePinia(createPinia())
  localStorage.clear()
  for (const f of Object.values(api)) f.mockReset()
  api.facts.mockResolvedValue({ facts: [], refreshed: null })
  api.stepTimings.mockResolvedValue({ plan_id: null, seconds: {}, runs: 0 })
  api.stepLog.mockImplementation(async (step: string, attempt: number) => page(step, attempt, []))
})

const page = (step: string, attempt: number, lines: string[], over = {}) => ({
  step, attempt, attempts: attempt, outcome: 'failed', run_id: 'r1', started_at: null, finished_at: null,
  start: 0, end: 0, size: 0, lines, file: `/h/logs/r1/${step}-${attempt}.log`, missing: null, ...over,
})

describe('DeployView', () => {
  it('shows each step with a text badge, the failure details and the retry buttons', async () => {
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([
      step('a', 'completed'),
      step('b', 'failed', {
        attempts: 2,
        last_error: { message: 'boom', task: 'Install k8s', host: 'node1', exit_code: 2, output_tail: ['line 1', 'last line'] },
      }),
      step('c', 'pending'),
    ], { status: 'failed' })
    const w = mount(DeployView)
    expect(w.text()).toContain('33% — 1 of 3 steps completed, 1 failed')
    expect(w.find('[data-step=b] .badge').text()).toContain('failed')
    expect(w.find('[data-testid=failure-task]').text()).toBe('Install k8s')
    expect(w.text()).toContain('node1')
    expect(w.find('.tail').text()).toContain('last line')
    api.startRun.mockResolvedValue(null)
    await byRole(w, 'button', 'Retry Title b').trigger('click')
    expect(api.startRun).toHaveBeenCalledWith({ kind: 'retry', steps: ['b'], ssh_password: null, tokens: {}, remember_tokens: false }, expect.any(Function))
    expect(w.findAll('button').map((b) => b.text())).toContain('Retry failed')
    expect(w.findAll('button').map((b) => b.text())).not.toContain('Resume')
  })

  it('asks before cleaning the state', async () => {
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([step('a', 'completed')], { status: 'completed' })
    api.cleanState.mockResolvedValue('Progress archived.')
    api.getState.mockResolvedValue(snapshot([]))
    const w = mount(DeployView)
    await w.findAll('button').find((b) => b.text() === 'Clean state')!.trigger('click')
    expect(api.cleanState).not.toHaveBeenCalled()
    await w.findAll('button').find((b) => b.text() === 'Yes, clean state')!.trigger('click')
    await flushPromises()
    expect(api.cleanState).toHaveBeenCalledOnce()
    expect(store.notice).toBe('Progress archived.')
  })

  it('is read-only while another process holds the lock, and names it', () => {
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([step('a', 'running')], { lockPid: 4242 })
    const w = mount(DeployView)
    expect(byRole(w, 'status', /^Read-only: pid 4242/).text()).toContain('running deploy')
    const resume = w.findAll('button').find((b) => b.text() === 'Resume')
    expect(resume?.attributes('disabled')).toBeDefined()
  })

  it('on a shared backend, names it and the machine that holds the lock, and says when it cannot be reached', async () => {
    const store = useInstallerStore()
    store.launch = launch()
    const backend = 'azblob://team/states/lab'
    const base = snapshot([step('a', 'running')], { lockPid: 4242 })
    base.status!.lock.host = 'ci-runner-7'
    base.status!.shared = { backend, read_at: '2026-11-22T00:01:00Z', unreachable: null, lease_expires_in_seconds: 12 }
    store.snapshot = base
    const w = mount(DeployView)
    expect(byRole(w, 'status', /^Read-only: pid 4242/).text()).toContain('on ci-runner-7 is running deploy')
    expect(w.get('[data-testid="shared-backend"]').text()).toBe(`State shared at ${backend}.`)
    store.snapshot = { ...base, status: { ...base.status!, shared: { ...base.status!.shared!, unreachable: 'cannot reach Azure Storage' } } }
    await nextTick()
    expect(w.get('[data-testid="shared-backend"]').text()).toContain('it cannot be reached now (cannot reach Azure Storage); this is the state read at 2026-11-22T00:01:00Z')
    // Not shared: neither line, and no host in the notice.
    store.snapshot = snapshot([step('a', 'running')], { lockPid: 4242 })
    await nextTick()
    expect(w.find('[data-testid="shared-backend"]').exists()).toBe(false)
    expect(w.find('[data-testid="holder-host"]').exists()).toBe(false)
  })

  it('--skip-config: shows each attempt, then the error with a way to the configuration', async () => {
    let report: (a: ReadinessAttempt) => void = () => {}
    let fail: (e: unknown) => void = () => {}
    api.backendRetry.mockImplementation((cb) => {
      report = cb
      return new Promise((_, reject) => (fail = reject))
    })
    const store = useInstallerStore()
    store.launch = launch({ skip_config: true })
    store.snapshot = snapshot([])
    const done = store.checkReadiness()
    const w = mount(DeployView)
    const missing = { part: 'inventory' as const, message: 'there is no inventory at /h/inventory.yaml' }
    for (let attempt = 1; attempt <= 5; attempt++) {
      report({ attempt, of: 5, problems: [missing] })
      await flushPromises()
      expect(byRole(w, 'status').text()).toContain(`attempt ${attempt} of 5`)
    }
    expect(w.text()).toContain('there is no inventory')
    expect(w.text()).not.toContain('Start deployment')
    fail({ code: 'not_ready', message: 'Not ready after 5 attempts: there is no inventory' })
    await done
    await flushPromises()
    expect(w.find('[data-testid=readiness-error]').text()).toContain('Not ready after 5 attempts')
    expect(w.text()).toContain('5 attempts were made.')
    await w.findAll('button').find((b) => b.text() === 'Open the configuration')!.trigger('click')
    expect(store.screen).toBe('wizard')
  })

  it('asks for the SSH password when the backend needs it, and sends it once', async () => {
    api.startRun.mockRejectedValueOnce({ code: 'needs_password', message: 'The SSH password is needed' })
    // The accepted run reports a state, which the page mirrors into localStorage.
    api.startRun.mockImplementationOnce(async (_request, onEvent) => {
      onEvent({ type: 'state', snapshot: snapshot([step('a', 'running')], { serial: 5 }) })
    })
    api.startRun.mockResolvedValue(null)
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([])
    const w = mount(DeployView)
    await store.startRun('deploy')
    await flushPromises()
    expect(api.startRun).toHaveBeenCalledTimes(1)
    expect(api.startRun.mock.calls[0]?.[0]).toEqual({ kind: 'deploy', steps: [], ssh_password: null, tokens: {}, remember_tokens: false })
    await byLabel(w, /^SSH password/).setValue('s3cret')
    await byRole(w, 'form').trigger('submit')
    await flushPromises()
    expect(api.startRun).toHaveBeenCalledTimes(2)
    expect(api.startRun.mock.calls[1]?.[0]).toEqual({ kind: 'deploy', steps: [], ssh_password: 's3cret', tokens: {}, remember_tokens: false })
    expect(store.needsPassword).toBe(false)
    expect(() => byLabel(w, /^SSH password/)).toThrow()

    // The app keeps the password in memory: a later run does not send it again.
    await store.startRun('resume')
    expect(api.startRun).toHaveBeenCalledTimes(3)
    expect(api.startRun.mock.calls[2]?.[0]).toEqual({ kind: 'resume', steps: [], ssh_password: null, tokens: {}, remember_tokens: false })

    // The mirror was written (the check below can fail) and holds no password.
    const stored = Array.from({ length: localStorage.length }, (_, i) => localStorage.getItem(localStorage.key(i) ?? '') ?? '')
    expect(stored.join('')).toContain('"serial":5')
    for (const value of stored) expect(value).not.toContain('s3cret')
  })

  it('asks for the tokens the plan needs when the backend says so, and starts the same run with them', async () => {
    api.startRun.mockRejectedValueOnce({ code: 'needs_tokens', message: 'The plan\'s playbooks need CLOUDFLARE_TOKEN (Cloudflare API token)' })
    api.startRun.mockResolvedValue(null)
    api.runTokens.mockResolvedValue({
      tokens: [{ name: 'CLOUDFLARE_TOKEN', what: 'Cloudflare API token', required: true, given: false, in_keyring: false }],
      keyring: { available: true, why: null },
    })
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([step('a', 'failed')], { status: 'failed' })
    const w = mount(DeployView)
    await store.startRun('retry', ['a'])
    await flushPromises()
    expect(store.needsTokens).toBe(true)
    expect(w.text()).toContain('Cloudflare API token (CLOUDFLARE_TOKEN)')
    expect(store.error?.message).toContain('need CLOUDFLARE_TOKEN')
    await w.get('input[type="password"][aria-label="CLOUDFLARE_TOKEN"]').setValue('cf-value')
    await byRole(w, 'form', 'Tokens').trigger('submit')
    await flushPromises()
    expect(api.startRun).toHaveBeenCalledTimes(2)
    // Not kept in the keyring unless the box is ticked.
    expect(api.startRun.mock.calls[1]?.[0]).toEqual({
      kind: 'retry',
      steps: ['a'],
      ssh_password: null,
      tokens: { CLOUDFLARE_TOKEN: 'cf-value' },
      remember_tokens: false,
    })
    expect(store.needsTokens).toBe(false)
    expect(w.find('form[aria-label="Tokens"]').exists()).toBe(false)
  })
})

describe('the live log', () => {
  // The log stayed at "No output yet" / "0 lines" while a step printed: the lines
  // were appended to the same array, so the page never saw a change.
  it('shows lines as they arrive, while the step runs', async () => {
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([step('a', 'running'), step('b', 'pending')], { status: 'in_progress' })
    store.running = true
    const w = mount(DeployView)
    store.onEvent({ type: 'progress', progress: { type: 'step_started', run_id: 'r', step: 'a', title: 'Title a', phase: 'p', index: 1, total: 2, attempt: 1 } } as unknown as RunEvent)
    store.onEvent({ type: 'log', step: 'a', lines: ['one', 'two', 'three'] })
    await nextTick()
    expect(w.find('[data-testid=log-count]').text()).toBe('3 lines')
    expect(w.text()).toContain('three')
    store.onEvent({ type: 'log', step: 'a', lines: ['four', 'five'] })
    await nextTick()
    expect(w.find('[data-testid=log-count]').text()).toBe('5 lines')
    expect(w.text()).toContain('five')
  })
})

describe('timings and the running step in view', () => {
  const attempt = (outcome: 'success' | 'running' | 'failed', from: string, to: string | null) => ({
    number: 1, outcome, started_at: from, finished_at: to, has_log: true,
  })

  it('shows each step\'s duration, the run\'s time so far and an estimate of what is left from earlier runs', async () => {
    vi.useFakeTimers({ now: Date.parse('2026-12-04T10:01:00Z'), toFake: ['Date', 'setInterval', 'clearInterval'] })
    try {
      const store = useInstallerStore()
      store.launch = launch()
      const snap = snapshot([
        step('a', 'completed', { attempt_list: [attempt('success', '2026-12-04T10:00:00Z', '2026-12-04T10:00:45Z')] }),
        step('b', 'running', { attempt_list: [attempt('running', '2026-12-04T10:00:45Z', null)] }),
        step('c', 'pending'),
      ])
      snap.status!.current_run = { run_id: 'r', started_at: '2026-12-04T10:00:00Z', finished_at: null, outcome: 'running' as never }
      store.snapshot = snap
      store.timings = { plan_id: 'demo', seconds: { a: 40, b: 60, c: 120 }, runs: 2 }
      const w = mount(DeployView)
      await flushPromises()
      expect(w.find('[data-step=a] [data-testid=step-took]').text()).toBe('45 s')
      expect(w.find('[data-step=b] [data-testid=step-took]').text()).toBe('15 s')
      expect(w.find('[data-step=c] [data-testid=step-took]').exists()).toBe(false)
      expect(w.find('[data-testid=run-time]').text()).toBe('This run: 1 min 00 s · about 2 min 45 s left (from 2 earlier runs)')
      vi.advanceTimersByTime(5000)
      await nextTick()
      expect(w.find('[data-step=b] [data-testid=step-took]').text()).toBe('20 s')
      expect(w.find('[data-testid=run-time]').text()).toBe('This run: 1 min 05 s · about 2 min 40 s left (from 2 earlier runs)')
    } finally {
      vi.useRealTimers()
    }
  })

  it('folds finished phases while another runs, keeps a phase the user opened, and scrolls to the running step', async () => {
    const scrolled: string[] = []
    Element.prototype.scrollIntoView = function (this: Element) {
      scrolled.push((this as HTMLElement).dataset.step ?? '?')
    }
    const store = useInstallerStore()
    store.launch = launch()
    const two = (steps: ReturnType<typeof step>[]) => {
      const s = snapshot(steps)
      s.status!.phases = [{ id: 'p1', title: 'Phase one' }, { id: 'p2', title: 'Phase two' }]
      return s
    }
    store.snapshot = two([step('a', 'completed'), step('b', 'pending', { phase: 'p2' })])
    const w = mount(DeployView, { attachTo: document.body })
    const details = (p: string) => w.find(`[data-phase=${p}] details`).element as HTMLDetailsElement
    expect(details('p1').open).toBe(false)
    expect(details('p2').open).toBe(true)
    expect(w.find('[data-phase=p1] summary').text()).toContain('1 of 1 done')

    details('p1').open = true
    details('p1').dispatchEvent(new Event('toggle'))
    store.snapshot = two([step('a', 'completed'), step('b', 'running', { phase: 'p2' })])
    await flushPromises()
    expect(details('p1').open, 'the user opened it').toBe(true)
    expect(scrolled).toEqual(['b'])
    w.unmount()
  })

  // After a relaunch the window has no live lines: the log shown is the failed
  // step's, read from its file.
  it('after a relaunch, shows the failed step\'s log from its file', async () => {
    const store = useInstallerStore()
    store.launch = launch()
    store.snapshot = snapshot([
      step('a', 'completed', { attempt_list: [attempt('success', '2026-12-04T10:00:00Z', '2026-12-04T10:00:01Z')] }),
      step('b', 'failed', { attempt_list: [attempt('failed', '2026-12-04T10:00:01Z', '2026-12-04T10:00:02Z')] }),
    ], { status: 'failed' })
    api.stepLog.mockResolvedValue(page('b', 1, ['fatal: it broke']))
    const w = mount(DeployView)
    await flushPromises()
    expect(api.stepLog).toHaveBeenCalledWith('b', 1, null, null)
    expect(byRole(w, 'heading', 'Log of Title b — attempt 1 of 1').exists()).toBe(true)
    expect(w.find('[role=log]').text()).toContain('fatal: it broke')
    await byRole(w, 'button', 'Show the log of Title a').trigger('click')
    await flushPromises()
    expect(api.stepLog).toHaveBeenLastCalledWith('a', 1, null, null)
  })
})
