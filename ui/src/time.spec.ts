import { describe, expect, it } from 'vitest'
import { step } from './test-support'
import { estimateLeft, formatDuration, formatWhen, secondsBetween } from './time'

const at = (iso: string) => Date.parse(iso)
const ran = (secs: number) => [{
  number: 1, outcome: 'running' as const, started_at: '2026-12-04T10:00:00Z', finished_at: null, has_log: true,
}].map((a) => ({ ...a, started_at: new Date(at('2026-12-04T10:00:00Z') - secs * 1000).toISOString() }))

describe('durations', () => {
  it('reads as people say them', () => {
    expect(formatDuration(0)).toBe('0 s')
    expect(formatDuration(59.6)).toBe('1 min 00 s')
    expect(formatDuration(75)).toBe('1 min 15 s')
    expect(formatDuration(3 * 3600 + 5 * 60 + 9)).toBe('3 h 05 min')
  })

  it('counts from a start to an end, or to now while it runs', () => {
    expect(secondsBetween('2026-12-04T10:00:00Z', '2026-12-04T10:01:30Z', 0)).toBe(90)
    expect(secondsBetween('2026-12-04T10:00:00Z', null, at('2026-12-04T10:00:07Z'))).toBe(7)
    expect(secondsBetween(null, null, 0)).toBeNull()
  })
})

describe('the estimate of what is left', () => {
  const now = at('2026-12-04T10:00:00Z')

  it('adds the steps still to run, less what the running one has taken', () => {
    const steps = [
      step('done', 'completed'),
      step('run', 'running', { attempt_list: ran(20) }),
      step('next', 'pending'),
    ]
    expect(estimateLeft(steps, { done: 10, run: 60, next: 30 }, now)).toEqual({ seconds: 70, complete: true, unknown: 0 })
  })

  it('is a lower bound when a step never ran before, and absent when none did', () => {
    const steps = [step('a', 'pending'), step('b', 'pending')]
    expect(estimateLeft(steps, { a: 30 }, now)).toEqual({ seconds: 30, complete: false, unknown: 1 })
    expect(estimateLeft(steps, {}, now)).toBeNull()
  })

  it('never goes below nothing when a step runs longer than last time', () => {
    const steps = [step('run', 'running', { attempt_list: ran(500) })]
    expect(estimateLeft(steps, { run: 60 }, now)).toEqual({ seconds: 0, complete: true, unknown: 0 })
  })
})

describe('formatWhen', () => {
  it('shows a moment to the second, without its nanoseconds or zone letters', () => {
    expect(formatWhen('2026-12-04T12:41:45.020468336Z', 'UTC')).toBe('4 Dec 2026, 12:41:45')
    expect(formatWhen('2026-12-04T12:41:45Z', 'Europe/Madrid')).toBe('4 Dec 2026, 13:41:45')
  })
  it('says nothing is there with a dash, and leaves what it cannot read as it is', () => {
    expect(formatWhen(null)).toBe('—')
    expect(formatWhen('yesterday')).toBe('yesterday')
  })
})
