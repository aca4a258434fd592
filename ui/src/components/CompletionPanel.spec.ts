import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { Completion } from '../bindings/Completion'

const api = vi.hoisted(() => ({ completion: vi.fn(), openLink: vi.fn() }))
vi.mock('../api', () => ({ api }))

import CompletionPanel from './CompletionPanel.vue'
import { allByRole, byRole } from '../test-support'
import { formatWhen } from '../time'

const done = (extra: Partial<Completion> = {}): Completion => ({
  plan_title: 'Demo deployment to this machine', target: 'this machine', hosts: [],
  links: [{ title: 'The demo site', url: 'http://127.0.0.1:8765/' }], credentials: null, plan_problem: null,
  completed_steps: 8, skipped_steps: 1, started_at: '2026-12-04T12:00:00Z', finished_at: '2026-12-04T12:03:00Z',
  run_seconds: 125, runs: 2, ...extra,
})

beforeEach(() => {
  for (const f of Object.values(api)) f.mockReset()
})

describe('CompletionPanel', () => {
  it('says what was deployed, where, and how long it took', async () => {
    api.completion.mockResolvedValue(done())
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    const panel = byRole(w, 'region', 'Deployed: Demo deployment to this machine')
    expect(panel.text()).toContain('This machine')
    expect(panel.text()).toContain('2 min 05 s over 2 runs')
    expect(panel.text()).toContain(`from ${formatWhen('2026-12-04T12:00:00Z')} to ${formatWhen('2026-12-04T12:03:00Z')}`)
    expect(panel.text()).toContain('8 steps completed, 1 skipped')
    expect(panel.text()).toContain('http://127.0.0.1:8765/')
  })

  it('says where the credentials are, when the plan tells', async () => {
    api.completion.mockResolvedValue(done({ credentials: 'Sign in as thinkube; the passwords are in ~/.env on the control plane.' }))
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    expect(byRole(w, 'heading', 'Signing in').exists()).toBe(true)
    expect(w.text()).toContain('Sign in as thinkube; the passwords are in ~/.env on the control plane.')
  })

  it('has no sign-in section when the plan says nothing of credentials', async () => {
    api.completion.mockResolvedValue(done())
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    expect(allByRole(w, 'heading', 'Signing in')).toEqual([])
  })

  it('names each server with its address', async () => {
    api.completion.mockResolvedValue(done({
      target: '2 servers', hosts: [{ name: 'tk1', address: '10.0.0.11' }, { name: 'tk2', address: '10.0.0.12' }], links: [],
    }))
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    expect(allByRole(w, 'listitem').map((l) => l.text())).toEqual(['tk1 10.0.0.11', 'tk2 10.0.0.12'])
    expect(w.text()).toContain('2 servers:')
  })

  it('opens a link in the browser, and shows why when it cannot', async () => {
    api.completion.mockResolvedValue(done())
    api.openLink.mockRejectedValueOnce({ code: 'io', message: 'Could not open a browser (xdg-open: not found); open http://127.0.0.1:8765/ yourself.' })
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    await byRole(w, 'button', 'The demo site').trigger('click')
    await flushPromises()
    expect(api.openLink).toHaveBeenCalledWith('http://127.0.0.1:8765/')
    expect(byRole(w, 'alert').text()).toContain('open http://127.0.0.1:8765/ yourself')
  })

  it('says why there are no links when the plan cannot be read', async () => {
    api.completion.mockResolvedValue(done({ links: [], plan_problem: 'the plan /p/plan.yaml cannot be used: not found' }))
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    expect(w.text()).toContain("The plan's links cannot be shown: the plan /p/plan.yaml cannot be used")
    expect(allByRole(w, 'button')).toHaveLength(0)
  })

  it('reads it again when the state changes, and shows nothing before completion', async () => {
    api.completion.mockResolvedValue(null)
    const w = mount(CompletionPanel, { props: { serial: 3 } })
    await flushPromises()
    expect(w.text()).toBe('')
    api.completion.mockResolvedValue(done())
    await w.setProps({ serial: 4 })
    await flushPromises()
    expect(api.completion).toHaveBeenCalledTimes(2)
    expect(w.text()).toContain('Deployed: Demo deployment to this machine')
  })
})
