import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { emptySnapshot } from './test-support'

const api = vi.hoisted(() => ({
  history: vi.fn(async () => ({ rows: [], unreadable: [] })),
  facts: vi.fn(async () => []),
  closeWindow: vi.fn(async () => null),
}))
vi.mock('./api', () => ({ api }))

import InstallerApp from './InstallerApp.vue'
import { useInstallerStore } from './stores/installer'

let wrapper: ReturnType<typeof mount> | null = null
beforeEach(() => setActivePinia(createPinia()))
afterEach(() => wrapper?.unmount())

function app() {
  const store = useInstallerStore()
  store.init = vi.fn(async () => {}) // the backend is not what this test is about
  store.loading = false
  store.snapshot = emptySnapshot()
  wrapper = mount(InstallerApp, { attachTo: document.body })
  return store
}

const navButton = (name: string) => wrapper!.find('nav').findAll('button').find((b) => b.text() === name)!

describe('InstallerApp', () => {
  it('moves the focus to the heading of the screen switched to, and marks the current one', async () => {
    const store = app()
    await navButton('History').trigger('click')
    await flushPromises()
    expect(store.screen).toBe('history')
    expect(document.activeElement?.tagName).toBe('H2')
    expect(document.activeElement?.textContent).toBe('History')
    expect(navButton('History').attributes('aria-current')).toBe('page')
    expect(navButton('Home').attributes('aria-current')).toBeUndefined()

    // A screen changed by the app itself (not the menu) does the same.
    store.screen = 'welcome'
    await flushPromises()
    expect(document.activeElement?.textContent).toBe('Welcome')
  })

  // Closing the window during a deployment killed it without asking.
  it('asks what to do when the window is closed during a run, the safe answer focused', async () => {
    const store = app()
    store.closeAsked = true
    await flushPromises()
    const dialog = wrapper!.find('[role=alertdialog]')
    expect(dialog.attributes('aria-label')).toBe('Close during a deployment')
    expect(document.activeElement?.textContent).toBe('Keep the window open')
    await dialog.trigger('keydown', { key: 'Escape' })
    expect(store.closeAsked).toBe(false)
    expect(api.closeWindow).not.toHaveBeenCalled()

    store.closeAsked = true
    await flushPromises()
    await wrapper!.findAll('button').find((b) => b.text() === 'Let it finish in the background')!.trigger('click')
    // After the page has painted the question gone.
    await vi.waitFor(() => expect(api.closeWindow).toHaveBeenLastCalledWith('background'))

    store.closeAsked = true
    await flushPromises()
    await wrapper!.findAll('button').find((b) => b.text() === 'Stop it and close')!.trigger('click')
    expect(api.closeWindow).toHaveBeenLastCalledWith('stop')
    await flushPromises()
    expect(wrapper!.text()).toContain('Stopping the deployment')
    expect(wrapper!.find('[role=alertdialog]').exists()).toBe(false)
  })
})
