import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { byRole, emptySnapshot, snapshot, step } from '../test-support'

const api = vi.hoisted(() => ({ startRun: vi.fn(), cleanState: vi.fn(), getState: vi.fn(), restoreMirror: vi.fn() }))
vi.mock('../api', () => ({ api }))

import WelcomeView from './WelcomeView.vue'
import { useInstallerStore } from '../stores/installer'

beforeEach(() => {
  setActivePinia(createPinia())
  localStorage.clear()
  for (const f of Object.values(api)) f.mockReset()
})

const buttons = (w: ReturnType<typeof mount>) => w.findAll('button').map((b) => b.text())

describe('WelcomeView', () => {
  it('offers to configure when there is no deployment', () => {
    useInstallerStore().snapshot = emptySnapshot()
    const w = mount(WelcomeView)
    expect(w.text()).toContain('No deployment yet')
    expect(buttons(w)).toEqual(['Configure and deploy', 'View history'])
  })

  it('offers Retry failed, Start over and View history for a failed deployment', () => {
    useInstallerStore().snapshot = snapshot([step('a', 'completed'), step('b', 'failed')], { status: 'failed' })
    const w = mount(WelcomeView)
    expect(w.find('[data-testid=existing-deployment]').text()).toContain('failed, 1 of 2 steps completed, 1 failed')
    expect(buttons(w)).toEqual(['Retry failed', 'View deployment', 'Start over', 'View history'])
  })

  it('offers Resume for an interrupted deployment', async () => {
    const store = useInstallerStore()
    store.snapshot = snapshot([step('a', 'completed'), step('b', 'interrupted')], { status: 'interrupted' })
    api.startRun.mockResolvedValue(null)
    const w = mount(WelcomeView)
    await w.findAll('button').find((b) => b.text() === 'Resume')!.trigger('click')
    expect(api.startRun.mock.calls[0]![0]).toMatchObject({ kind: 'resume' })
    expect(store.screen).toBe('deploy')
  })

  it('restores from the window copy only when the user says so', async () => {
    const store = useInstallerStore()
    store.offer = { kind: 'restore', copy: { lineage: 'l', serial: 7, savedAt: 't', document: { serial: 7 } } }
    store.snapshot = emptySnapshot()
    api.restoreMirror.mockResolvedValue(8)
    api.getState.mockResolvedValue(snapshot([step('a', 'completed')], { serial: 8 }))
    const w = mount(WelcomeView)
    expect(w.text()).toContain('serial 7')
    expect(api.restoreMirror).not.toHaveBeenCalled()
    await w.findAll('button').find((b) => b.text() === 'Restore')!.trigger('click')
    await flushPromises()
    expect(api.restoreMirror).toHaveBeenCalledWith('{"serial":7}')
    expect(store.notice).toContain('serial 8')
  })

  it('shows an unreadable state as an error with what to do', () => {
    useInstallerStore().snapshot = {
      status: null, document: null, running_here: false, title: 't',
      problem: { code: 'unreadable', message: 'cannot be read. Run `thinkube-deploy recover --from-backup`' },
    }
    const w = mount(WelcomeView)
    expect(byRole(w, 'alert').text()).toContain('recover --from-backup')
  })
})
