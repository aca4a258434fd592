import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import RunLog from './RunLog.vue'

const lines = Array.from({ length: 100_000 }, (_, i) => `line ${i + 1}${i % 1000 === 0 ? ' ERROR' : ''}`)

describe('RunLog', () => {
  it('puts only the visible lines in the page, however long the log', () => {
    const w = mount(RunLog, { props: { lines, step: 'Install', height: 180 } })
    const rendered = w.findAll('.run-log-line')
    expect(rendered.length).toBeLessThan(40)
    expect(w.find('[data-testid=log-count]').text()).toBe('100000 lines')
  })

  it('shows only the matching lines when searching, with their line numbers', async () => {
    const w = mount(RunLog, { props: { lines, step: 'Install', height: 180 } })
    await w.find('input[type=search]').setValue('error')
    expect(w.find('[data-testid=log-count]').text()).toBe('100 of 100000 lines match')
    const first = w.findAll('.run-log-line')[0]!
    expect(first.text()).toBe('1line 1 ERROR')
  })

  // The search carried over to the next step's log and hid it.
  it('starts each step\'s log with no search left from the step before', async () => {
    const w = mount(RunLog, { props: { lines, step: 'Install', height: 180 } })
    await w.find('input[type=search]').setValue('error')
    expect(w.find('[data-testid=log-count]').text()).toBe('100 of 100000 lines match')
    await w.setProps({ step: 'Configure', lines: ['configured'] })
    expect((w.find('input[type=search]').element as HTMLInputElement).value).toBe('')
    expect(w.find('[data-testid=log-count]').text()).toBe('1 line')
    expect(w.text()).toContain('configured')
  })

  it('says when there is no output yet', () => {
    const w = mount(RunLog, { props: { lines: [], step: 'Install' } })
    expect(w.text()).toContain('No output yet.')
  })
})
