// App-wide state: how the app was launched, the latest state snapshot, the screen
// shown, the running deployment's events and logs, and the readiness check.
import { defineStore } from 'pinia'
import { computed, ref, shallowRef, triggerRef } from 'vue'
import { api } from '../api'
import type { AppError } from '../bindings/AppError'
import type { LaunchInfo } from '../bindings/LaunchInfo'
import type { ReadinessAttempt } from '../bindings/ReadinessAttempt'
import type { RunEnded } from '../bindings/RunEnded'
import type { RunEvent } from '../bindings/RunEvent'
import type { RunKind } from '../bindings/RunKind'
import type { Snapshot } from '../bindings/Snapshot'
import type { StatusChange } from '../bindings/StatusChange'
import type { StepTimings } from '../bindings/StepTimings'
import type { TaskTally } from '../bindings/TaskTally'
import { type MirrorOffer, clearMirror, reconcile } from './mirror'

export type Screen = 'welcome' | 'wizard' | 'deploy' | 'history'
export type ReadinessState = 'idle' | 'checking' | 'ready' | 'failed'

/**
 * The most lines of live output the window keeps (the running step's; earlier
 * steps' live lines are dropped when the next starts, their logs being on disk).
 * So the page's memory is bounded by this, not by the run's whole output; the log
 * view reads the rest from the log file.
 */
export const LIVE_LINES = 20_000

const nextFrame = () =>
  new Promise<void>((done) => requestAnimationFrame(() => requestAnimationFrame(() => done())))

export const useInstallerStore = defineStore('installer', () => {
  const launch = ref<LaunchInfo | null>(null)
  const snapshot = shallowRef<Snapshot | null>(null)
  const loading = ref(true)
  const error = ref<AppError | null>(null)
  const screen = ref<Screen>('welcome')
  const offer = ref<MirrorOffer>({ kind: 'none' })
  const notice = ref<string | null>(null)

  // The running deployment.
  const running = ref(false)
  const runEnded = ref<RunEnded | null>(null)
  const logStep = ref<string | null>(null)
  const logs = shallowRef<Record<string, string[]>>({})
  // Per step: lines dropped from the start of its live buffer, and which attempt
  // the live lines belong to.
  const logDropped = ref<Record<string, number>>({})
  const liveAttempt = ref<Record<string, number>>({})
  // The running playbook's task and per-host counts.
  const tally = shallowRef<{ step: string; tally: TaskTally } | null>(null)
  // The window's close button was pressed during a run: what to do is asked.
  const closeAsked = ref(false)
  const closing = ref<'stop' | null>(null)
  // How long each step took when it last succeeded (for the estimate of what is left).
  const timings = ref<StepTimings | null>(null)
  // Lines are appended in place (a copy per batch would cost O(n) each time), so
  // whoever shows a log watches this count of changes, not the array.
  const logVersion = ref(0)
  const needsPassword = ref(false)
  // The plan's playbooks need tokens the window has not been given (never stored here).
  const needsTokens = ref(false)
  let pendingRun: { kind: RunKind; steps: string[] } | null = null

  // `--skip-config`'s readiness check.
  const readiness = ref<ReadinessState>('idle')
  const attempts = ref<ReadinessAttempt[]>([])
  const readinessError = ref<AppError | null>(null)

  const status = computed(() => snapshot.value?.status ?? null)
  const hasDeployment = computed(() => Boolean(status.value?.deployment.id))
  const lockedElsewhere = computed(
    () => Boolean(status.value?.lock.held) && !snapshot.value?.running_here && !running.value,
  )

  function applySnapshot(s: Snapshot) {
    snapshot.value = s
    document.title = s.title
    offer.value = reconcile(window.localStorage, s)
  }

  /**
   * Applies what changed during a run: the deployment's summary and the steps sent
   * (each whole), the other steps kept as they are. The browser copy is updated
   * from the whole state a run sends at its end.
   */
  function applyChange(c: StatusChange) {
    const s = snapshot.value
    if (!s?.status) return
    const changed = new Map(c.steps.map((step) => [step.id, step]))
    const steps = changed.size ? s.status.steps.map((step) => changed.get(step.id) ?? step) : s.status.steps
    snapshot.value = {
      ...s,
      status: { ...s.status, serial: c.serial, deployment: c.deployment, progress: c.progress, current_run: c.current_run, lock: c.lock, steps },
      running_here: true,
      title: c.title,
    }
    document.title = c.title
  }

  async function refresh() {
    try {
      applySnapshot(await api.getState())
      error.value = null
    } catch (e) {
      error.value = e as AppError
    }
  }

  async function loadTimings() {
    try {
      timings.value = await api.stepTimings()
    } catch {
      // Only the estimate is lost; history shows why runs cannot be read.
      timings.value = null
    }
  }

  async function init() {
    loading.value = true
    try {
      launch.value = await api.launchInfo()
      // Without it the backend lets a close go through, as it did before.
      api.windowNotices((n) => {
        if (n.type === 'close_requested') closeAsked.value = true
      }).catch(() => {})
      if (launch.value.clean_state && launch.value.clean_state_result) {
        clearMirror(window.localStorage)
        notice.value = launch.value.clean_state_result
      }
      if (launch.value.clean_state_error) error.value = launch.value.clean_state_error
      await refresh()
      void loadTimings()
      // Measured by scripts/bench-app.mjs: cold start to the first rendered state.
      requestAnimationFrame(() => performance.mark('thinkube:first-state'))
      if (launch.value.skip_config) {
        screen.value = 'deploy'
        void checkReadiness()
      }
    } catch (e) {
      error.value = e as AppError
    } finally {
      loading.value = false
    }
  }

  async function checkReadiness() {
    readiness.value = 'checking'
    attempts.value = []
    readinessError.value = null
    try {
      await api.backendRetry((a) => {
        attempts.value = [...attempts.value, a]
      })
      readiness.value = 'ready'
    } catch (e) {
      readinessError.value = e as AppError
      readiness.value = 'failed'
    }
  }

  function onEvent(e: RunEvent) {
    switch (e.type) {
      case 'progress':
        if (e.progress.type === 'step_started') {
          const step = e.progress.step
          logStep.value = step
          // Only the running step's lines are kept: the others are on disk.
          logs.value = { [step]: [] }
          logDropped.value = { [step]: 0 }
          liveAttempt.value = { [step]: e.progress.attempt }
          tally.value = null
          logVersion.value++
        } else if (e.progress.type === 'run_started') {
          void loadTimings()
        }
        break
      case 'log': {
        const lines = logs.value[e.step] ?? (logs.value[e.step] = [])
        for (const l of e.lines) lines.push(l)
        // Dropped in chunks, so that trimming costs little per line.
        if (lines.length > LIVE_LINES * 1.25) {
          const drop = lines.length - LIVE_LINES
          lines.splice(0, drop)
          logDropped.value = { ...logDropped.value, [e.step]: (logDropped.value[e.step] ?? 0) + drop }
        }
        logVersion.value++
        triggerRef(logs)
        break
      }
      case 'tasks':
        tally.value = { step: e.step, tally: e.tally }
        break
      case 'state':
        applySnapshot(e.snapshot)
        break
      case 'change':
        applyChange(e.change)
        break
      case 'ended':
        runEnded.value = e.ended
        running.value = false
        void loadTimings()
        if (e.ended.error?.code === 'needs_password') needsPassword.value = true
        if (e.ended.error?.code === 'needs_tokens') needsTokens.value = true
        break
    }
  }

  async function startRun(
    kind: RunKind,
    steps: string[] = [],
    sshPassword: string | null = null,
    tokens: Record<string, string> = {},
    rememberTokens = false,
  ) {
    error.value = null
    runEnded.value = null
    notice.value = null
    pendingRun = { kind, steps }
    try {
      running.value = true
      await api.startRun(
        { kind, steps, ssh_password: sshPassword, tokens, remember_tokens: rememberTokens },
        onEvent,
      )
      needsPassword.value = false
      needsTokens.value = false
      screen.value = 'deploy'
    } catch (e) {
      running.value = false
      const err = e as AppError
      if (err.code === 'needs_password') needsPassword.value = true
      else if (err.code === 'needs_tokens') {
        needsTokens.value = true
        error.value = err
      } else error.value = err
    }
  }

  async function giveSshPassword(password: string) {
    const run = pendingRun ?? { kind: 'resume' as RunKind, steps: [] }
    await startRun(run.kind, run.steps, password)
  }

  /**
   * Starts the run that asked for tokens again with them (kept in the backend's
   * memory, and in the desktop's keyring when `remember`).
   */
  async function giveTokens(tokens: Record<string, string>, remember = false) {
    const run = pendingRun ?? { kind: 'resume' as RunKind, steps: [] }
    await startRun(run.kind, run.steps, null, tokens, remember)
  }

  /** Answers the close asked for during a run: let it finish hidden, or stop it. */
  async function closeWindow(choice: 'background' | 'stop' | 'keep') {
    closeAsked.value = false
    if (choice === 'keep') return
    if (choice === 'stop') closing.value = 'stop'
    try {
      // The page paints the question gone before the window hides, so that it does
      // not flash back when the window is shown again.
      if (choice === 'background') await nextFrame()
      await api.closeWindow(choice)
    } catch (e) {
      closing.value = null
      error.value = e as AppError
    }
  }

  async function cancel() {
    try {
      await api.cancelRun()
    } catch (e) {
      error.value = e as AppError
    }
  }

  async function cleanState() {
    try {
      notice.value = await api.cleanState()
      logs.value = {}
      logDropped.value = {}
      liveAttempt.value = {}
      logVersion.value++
      logStep.value = null
      runEnded.value = null
      await refresh()
    } catch (e) {
      error.value = e as AppError
    }
  }

  async function restoreFromMirror() {
    if (offer.value.kind === 'none') return
    const text =
      offer.value.kind === 'restore' ? JSON.stringify(offer.value.copy.document) : offer.value.text
    try {
      const serial = await api.restoreMirror(text)
      notice.value = `Restored the state from the window's copy (serial ${serial}).`
      await refresh()
    } catch (e) {
      error.value = e as AppError
    }
  }

  function dismissOffer() {
    offer.value = { kind: 'none' }
  }

  return {
    launch, snapshot, loading, error, screen, offer, notice,
    running, runEnded, logStep, logs, logVersion, logDropped, liveAttempt, tally, timings, needsPassword, needsTokens,
    readiness, attempts, readinessError,
    status, hasDeployment, lockedElsewhere,
    closeAsked, closing, closeWindow,
    init, refresh, checkReadiness, startRun, giveSshPassword, giveTokens, cancel, cleanState,
    restoreFromMirror, dismissOffer, onEvent,
  }
})
