// The words the window uses for what the engine records: kinds of run, outcomes, and
// the fields two runs can differ in.
import type { RunKind } from './bindings/RunKind'
import type { RunOutcome } from './bindings/RunOutcome'

export function kindWord(kind: RunKind): string {
  return { deploy: 'Deployment', resume: 'Resume', retry: 'Retry' }[kind] ?? kind
}

export function outcomeWord(outcome: RunOutcome): string {
  return { running: 'Running', success: 'Completed', failed: 'Failed', interrupted: 'Interrupted' }[outcome] ?? outcome
}

/** Names for ids: plans' and steps' titles, by id. */
export type Titles = { plans: Record<string, string>; steps: Record<string, string> }

/** A difference's field (`flags.gpu`, `steps.microk8s`, `plan_digest`) in words. */
export function fieldWords(field: string, titles: Titles): string {
  const dot = field.indexOf('.')
  const [head, rest] = dot < 0 ? [field, ''] : [field.slice(0, dot), field.slice(dot + 1)]
  switch (head) {
    case 'kind': return 'Kind of run'
    case 'plan_id': return 'Plan'
    case 'plan_digest': return 'Plan content'
    case 'outcome': return 'Outcome'
    case 'flags': return `Flag ${rest}`
    case 'vars': return `Variable ${rest}`
    case 'answers': return `Answer ${rest.replace(/_/g, ' ')}`
    case 'steps': return `Step ${titles.steps[rest] ?? rest}`
    default: return field
  }
}

/** A difference's value in words: flags on or off, outcomes and kinds as words, nothing as "—". */
export function valueWords(field: string, value: unknown, titles: Titles): string {
  const head = field.split('.')[0]
  if (value === null || value === undefined) return head === 'steps' ? 'not run' : '—'
  if (head === 'flags' && typeof value === 'boolean') return value ? 'on' : 'off'
  if ((head === 'outcome' || head === 'steps') && typeof value === 'string') return outcomeWord(value as RunOutcome)
  if (head === 'kind' && typeof value === 'string') return kindWord(value as RunKind)
  if (head === 'plan_id' && typeof value === 'string') return titles.plans[value] ?? value
  if (head === 'plan_digest' && typeof value === 'string') return value.replace(/^sha256:/, '').slice(0, 12)
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return JSON.stringify(value)
}
