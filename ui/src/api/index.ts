// The only module that talks to the Tauri backend. Everything else imports from here,
// so component tests mock this one module.
import { Channel, invoke } from '@tauri-apps/api/core'
import type { AppError } from '../bindings/AppError'
import type { CloseChoice } from '../bindings/CloseChoice'
import type { FactsAnswer } from '../bindings/FactsAnswer'
import type { FieldProblem } from '../bindings/FieldProblem'
import type { HistoryListing } from '../bindings/HistoryListing'
import type { HostKeyView } from '../bindings/HostKeyView'
import type { HostCheck } from '../bindings/HostCheck'
import type { HostHardware } from '../bindings/HostHardware'
import type { AcceptedKey } from '../bindings/AcceptedKey'
import type { InstallerConfig } from '../bindings/InstallerConfig'
import type { LaunchInfo } from '../bindings/LaunchInfo'
import type { LogPage } from '../bindings/LogPage'
import type { SavedLog } from '../bindings/SavedLog'
import type { Validation } from '../bindings/Validation'
import type { PlanOutline } from '../bindings/PlanOutline'
import type { ReadinessAttempt } from '../bindings/ReadinessAttempt'
import type { RunDiff } from '../bindings/RunDiff'
import type { RunEvent } from '../bindings/RunEvent'
import type { RunRecord } from '../bindings/RunRecord'
import type { RunTokens } from '../bindings/RunTokens'
import type { RunRequest } from '../bindings/RunRequest'
import type { Snapshot } from '../bindings/Snapshot'
import type { WindowNotice } from '../bindings/WindowNotice'
import type { Completion } from '../bindings/Completion'
import type { PlanChoice } from '../bindings/PlanChoice'
import type { StepTimings } from '../bindings/StepTimings'
import type { SourceView } from '../bindings/SourceView'
import type { Fetched } from '../bindings/Fetched'
import type { CheckReport } from '../bindings/CheckReport'
import type { Requirement } from '../bindings/Requirement'

/** Every failed call rejects with an AppError: a closed `code` and a message to show. */
export function asAppError(e: unknown): AppError {
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) {
    return e as AppError
  }
  return { code: 'bad_input', message: String(e) }
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args)
  } catch (e) {
    throw asAppError(e)
  }
}

export const api = {
  launchInfo: () => call<LaunchInfo>('launch_info'),
  getState: () => call<Snapshot>('get_state'),
  backendRetry: (onAttempt: (a: ReadinessAttempt) => void) => {
    const channel = new Channel<ReadinessAttempt>()
    channel.onmessage = onAttempt
    return call<null>('backend_retry', { onAttempt: channel })
  },
  loadConfig: () => call<InstallerConfig | null>('load_config'),
  checkConfig: (config: InstallerConfig) => call<FieldProblem[]>('check_config', { config }),
  saveConfig: (config: InstallerConfig) => call<null>('save_config', { config }),
  planShow: (plan: string | null, flags: Record<string, boolean>, vars: Record<string, string>) =>
    call<PlanOutline>('plan_show', { plan, flags, vars }),
  /** `onEvent` hears each event in order; they arrive a message of several at a time. */
  startRun: (request: RunRequest, onEvent: (e: RunEvent) => void) => {
    const channel = new Channel<RunEvent[]>()
    channel.onmessage = (events) => events.forEach(onEvent)
    return call<null>('start_run', { request, onEvent: channel })
  },
  runTokens: () => call<RunTokens>('run_tokens'),
  forgetTokens: () => call<null>('forget_tokens'),
  cancelRun: () => call<boolean>('cancel_run'),
  cleanState: () => call<string>('clean_state'),
  history: () => call<HistoryListing>('history'),
  runDetails: (runId: string) => call<RunRecord>('run_details', { runId }),
  diffRuns: (runA: string, runB: string) => call<RunDiff>('diff_runs', { runA, runB }),
  restoreMirror: (document: string) => call<number>('restore_mirror', { document }),
  facts: (refresh: boolean) => call<FactsAnswer>('facts', { refresh }),
  validate: () => call<Validation | null>('validate'),
  hostKeys: (config: InstallerConfig) => call<HostKeyView[]>('host_keys', { config }),
  trustHostKeys: (config: InstallerConfig, accepted: AcceptedKey[]) =>
    call<HostKeyView[]>('trust_host_keys', { config, accepted }),
  preflight: (config: InstallerConfig) => call<HostCheck[]>('preflight', { config }),
  /** What this machine needs for the configuration's plan and target, each checked. */
  machineRequirements: (config: InstallerConfig) => call<Requirement[]>('machine_requirements', { config }),
  /** Installs the pinned Ansible and its collections into the installer's venv (minutes). */
  installAnsible: () => call<string>('install_ansible'),
  /** The checkout an upstream plan needs (null for a plan of its own playbooks). */
  sourceStatus: (config: InstallerConfig) => call<SourceView | null>('source_status', { config }),
  /** Puts the checkout at the plan's pin, from `from` (default the plan's repository). */
  fetchSource: (plan: string, from: string | null) => call<Fetched>('fetch_source', { plan, from }),
  /** The plan check with the inventory this configuration writes. */
  checkPlan: (config: InstallerConfig) => call<CheckReport>('check_plan', { config }),
  detectHardware: (config: InstallerConfig) => call<HostHardware[]>('detect_hardware', { config }),
  /** A page of a step attempt's log file: its end, the page before `before`, or from `after` on. */
  stepLog: (step: string, attempt: number | null, before: number | null = null, after: number | null = null) =>
    call<LogPage>('step_log', { step, attempt, before, after }),
  /** Saves a copy of a step attempt's whole log in the download folder; says where. */
  saveStepLog: (step: string, attempt: number | null) => call<SavedLog>('save_step_log', { step, attempt }),
  stepTimings: () => call<StepTimings>('step_timings'),
  planChoices: () => call<PlanChoice[]>('plan_choices'),
  completion: () => call<Completion | null>('completion'),
  openLink: (url: string) => call<null>('open_link', { url }),
  /** Where the backend tells the page about its window (a close asked for during a run). */
  windowNotices: (onNotice: (n: WindowNotice) => void) => {
    const channel = new Channel<WindowNotice>()
    channel.onmessage = onNotice
    return call<null>('window_notices', { onNotice: channel })
  },
  closeWindow: (choice: CloseChoice) => call<null>('close_window', { choice }),
}

export type Api = typeof api
