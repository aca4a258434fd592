import { flushPromises, mount } from '@vue/test-utils'
import { describe, expect, it, vi } from 'vitest'
import { byRole } from '../test-support'
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

  // The live log opened on a step whose first 40 lines came in the same message as
  // its start, and stayed on line 1 to 38: following began only with the next line.
  it('opens at the end of the lines it already has, following', async () => {
    const height = Object.getOwnPropertyDescriptor(HTMLElement.prototype, 'scrollHeight')
    // jsdom lays nothing out: the viewport's scroll height is its content's height.
    Object.defineProperty(HTMLElement.prototype, 'scrollHeight', {
      configurable: true,
      get(this: HTMLElement) {
        return parseInt((this.firstElementChild as HTMLElement | null)?.style.height ?? '0', 10) || 0
      },
    })
    try {
      const forty = Array.from({ length: 40 }, (_, i) => `line-${i + 1}`)
      const w = mount(RunLog, { props: { lines: forty, step: 'Chatty', height: 320 } })
      await flushPromises()
      expect(w.find('[role=log]').text()).toContain('line-40')
      expect(w.find('[role=log]').text()).not.toContain('line-1line-2')
    } finally {
      if (height) Object.defineProperty(HTMLElement.prototype, 'scrollHeight', height)
    }
  })

  it('says when there is no output yet', () => {
    const w = mount(RunLog, { props: { lines: [], step: 'Install' } })
    expect(w.text()).toContain('No output yet.')
  })

  it('draws ANSI colours instead of printing their escape codes, and searches the text', async () => {
    const w = mount(RunLog, { props: { lines: ['\x1b[0;31mfatal: [node1]\x1b[0m', 'ok'], step: 'Install' } })
    const red = w.find('.run-log-line .ansi-red')
    expect(red.text()).toBe('fatal: [node1]')
    expect(w.text()).not.toContain('\x1b')
    expect(w.text()).not.toContain('[0;31m')
    await w.find('input[type=search]').setValue('fatal: [node1]')
    expect(w.find('[data-testid=log-count]').text()).toBe('1 of 2 lines match')
  })

  it('copies the lines shown, as plain text', async () => {
    const writeText = vi.fn().mockResolvedValue(undefined)
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true })
    const w = mount(RunLog, { props: { lines: ['\x1b[32mok one\x1b[0m', 'skip', 'ok two'], step: 'Install' } })
    await w.find('input[type=search]').setValue('ok')
    await byRole(w, 'button', 'Copy the matching lines').trigger('click')
    expect(writeText).toHaveBeenCalledWith('ok one\nok two')
    await Promise.resolve()
    expect(w.text()).toContain('Copied 2 lines.')
  })
})
