// Builders for component tests: snapshots and steps as the backend sends them.
import type { Snapshot } from './bindings/Snapshot'
import type { StepView } from './bindings/StepView'

export function step(id: string, status: StepView['status'], extra: Partial<StepView> = {}): StepView {
  return { id, phase: 'p1', title: `Title ${id}`, status, attempts: 1, skip_reason: null, notice: null, last_error: null, ...extra }
}

export function snapshot(steps: StepView[], opts: { lineage?: string; serial?: number; status?: string; lockPid?: number } = {}): Snapshot {
  const count = (s: string) => steps.filter((x) => x.status === s).length
  const total = steps.filter((x) => x.status !== 'skipped').length
  const lineage = opts.lineage ?? 'lin-1'
  const serial = opts.serial ?? 5
  return {
    status: {
      schema_version: 3, lineage, serial, environment: 'default', state_file: '/h/deployment-state.json',
      deployment: { id: steps.length ? 'd-1' : null, status: (opts.status ?? 'in_progress') as never, plan_id: 'demo', plan_digest: null },
      progress: {
        completed: count('completed'), failed: count('failed'), skipped: count('skipped'), interrupted: count('interrupted'),
        pending: count('pending'), running: count('running'), total,
        percentage: total ? Math.floor((100 * count('completed')) / total) : 0,
      },
      phases: [{ id: 'p1', title: 'Phase one' }],
      steps,
      current_run: null,
      lock: opts.lockPid
        ? { held: true, pid: opts.lockPid, operation: 'deploy', since: '2026-11-22T00:00:00Z', user: 'u', host: 'h' }
        : { held: false, pid: null, operation: null, since: null, user: null, host: null },
      converted_from: null,
    },
    document: { schema_version: 3, lineage, serial, deployment: {} },
    problem: null,
    running_here: false,
    title: 'Thinkube Installer',
  }
}

export const emptySnapshot = (): Snapshot => ({ ...snapshot([]), document: null, status: { ...snapshot([]).status!, lineage: null } })
