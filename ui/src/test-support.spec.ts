import { mount } from '@vue/test-utils'
import { defineComponent, h } from 'vue'
import { describe, expect, it } from 'vitest'
import { allByRole, byLabel, byRole } from './test-support'

const Page = defineComponent({
  render: () => h('main', [
    h('h2', 'Runs'),
    h('button', { type: 'button' }, 'Resume'),
    h('button', { type: 'button', 'aria-label': 'Retry step b' }, '↻'),
    h('p', { role: 'alert' }, 'It failed'),
    h('label', ['SSH password', h('input', { type: 'password' })]),
    h('input', { type: 'checkbox', id: 'c1' }),
    h('label', { for: 'c1' }, 'Choose run-1'),
  ]),
})

describe('queries by role and label', () => {
  it('find an element by its role and accessible name', () => {
    const w = mount(Page)
    expect(byRole(w, 'heading').text()).toBe('Runs')
    expect(byRole(w, 'button', 'Retry step b').text()).toBe('↻')
    expect(byRole(w, 'alert').text()).toBe('It failed')
    expect(byRole(w, 'checkbox', 'Choose run-1').element.id).toBe('c1')
    expect(byLabel(w, 'SSH password').attributes('type')).toBe('password')
    expect(allByRole(w, 'button')).toHaveLength(2)
  })

  it('fail, naming what there is, when there is not exactly one', () => {
    const w = mount(Page)
    expect(() => byRole(w, 'button')).toThrow(/found 2; buttons present: "Resume", "Retry step b"/)
    expect(() => byRole(w, 'button', 'Start')).toThrow(/found 0/)
    expect(() => byLabel(w, 'Password')).toThrow(/found 0/)
  })
})
