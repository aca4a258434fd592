import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import ProgressSummary from './ProgressSummary.vue'

const progress = { completed: 1, failed: 1, skipped: 0, interrupted: 0, pending: 1, running: 0, total: 3, percentage: 33 }

describe('ProgressSummary', () => {
  it('says how far the deployment is, with what failed', () => {
    const w = mount(ProgressSummary, { props: { progress, status: 'in_progress' } })
    expect(w.find('[data-testid=progress-text]').text()).toBe('33% — 1 of 3 steps completed, 1 failed · deployment in progress')
    expect(w.find('[role=progressbar]').attributes('aria-valuenow')).toBe('33')
    expect(w.find('[data-testid=run-time]').exists()).toBe(false)
  })

  it('says the time of the run going on, and of the last one once it ended', async () => {
    const w = mount(ProgressSummary, { props: { progress, status: 'in_progress', elapsed: '1 min 05 s', left: 'about 2 min left' } })
    expect(w.find('[data-testid=run-time]').text()).toBe('This run: 1 min 05 s · about 2 min left')
    await w.setProps({ finished: true, left: null })
    expect(w.find('[data-testid=run-time]').text()).toBe('The last run took 1 min 05 s')
  })
})
