// Durations for people: "45 s", "3 min 20 s", "1 h 05 min"; and the estimate of
// what is left of a run, from how long each step took when it last succeeded.
import type { StepView } from './bindings/StepView'

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`
}

/** Seconds from `from` to `to` (now when unset), or null when `from` is unset. */
export function secondsBetween(from: string | null | undefined, to: string | null | undefined, nowMs: number): number | null {
  if (!from) return null
  const a = Date.parse(from)
  const b = to ? Date.parse(to) : nowMs
  if (Number.isNaN(a) || Number.isNaN(b)) return null
  return Math.max(0, Math.floor((b - a) / 1000))
}

/** How long the step's last attempt took, or has taken so far while it runs. */
export function stepSeconds(step: StepView, nowMs: number): number | null {
  const last = step.attempt_list[step.attempt_list.length - 1]
  if (!last) return null
  return secondsBetween(last.started_at, last.outcome === 'running' ? null : last.finished_at, nowMs)
}

export type Estimate = { seconds: number; complete: boolean; unknown: number }

/**
 * What is left: each step still to run at the time it took last, less what the
 * running one has already taken. `complete` is false when some step never ran
 * before (`unknown` of them): the estimate is then a lower bound. Null when no step
 * left has a timing.
 */
export function estimateLeft(steps: StepView[], timings: Record<string, number>, nowMs: number): Estimate | null {
  let seconds = 0
  let known = 0
  let unknown = 0
  for (const s of steps) {
    if (!['pending', 'running', 'interrupted'].includes(s.status)) continue
    const took = timings[s.id]
    if (took === undefined) {
      unknown++
      continue
    }
    known++
    const sofar = s.status === 'running' ? (stepSeconds(s, nowMs) ?? 0) : 0
    seconds += Math.max(0, took - sofar)
  }
  if (!known) return null
  return { seconds, complete: unknown === 0, unknown }
}

/** A moment for people, in the local time: "4 Dec 2026, 12:41:45"; "—" when unset. */
export function formatWhen(iso: string | null | undefined, timeZone?: string): string {
  if (!iso) return '—'
  const ms = Date.parse(iso)
  if (Number.isNaN(ms)) return iso
  return new Intl.DateTimeFormat('en-GB', {
    day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone,
  }).format(ms)
}
