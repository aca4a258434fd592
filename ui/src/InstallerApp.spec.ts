import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { emptySnapshot } from './test-support'

const api = vi.hoisted(() => ({
  history: vi.fn(async () => ({ rows: [], unreadable: [] })),
  facts: vi.fn(async () => []),
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
})
