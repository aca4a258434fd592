import { mount } from '@vue/test-utils'
import { afterEach, describe, expect, it } from 'vitest'
import { defineComponent, nextTick, ref } from 'vue'
import ConfirmDialog from './ConfirmDialog.vue'

// A host like the screens: a button opens the dialog, answers close it.
const Host = defineComponent({
  components: { ConfirmDialog },
  setup() {
    const open = ref(false)
    const answers = ref<string[]>([])
    return { open, answers }
  },
  template: `
    <div>
      <button id="opener" type="button" @click="open = true">Clean state</button>
      <ConfirmDialog v-if="open" label="Confirm clean state" confirm-text="Yes, clean state" cancel-text="Keep it"
        @confirm="answers.push('yes'); open = false" @cancel="answers.push('no'); open = false">
        Archive the progress?
      </ConfirmDialog>
    </div>`,
})

let wrapper: ReturnType<typeof mount<typeof Host>> | null = null
afterEach(() => wrapper?.unmount())

async function opened() {
  const w = mount(Host, { attachTo: document.body })
  wrapper = w
  const opener = w.find('#opener')
  ;(opener.element as HTMLButtonElement).focus()
  await opener.trigger('click')
  await nextTick()
  return w
}

describe('ConfirmDialog', () => {
  it('takes the focus on the safe answer, so Enter never confirms by accident', async () => {
    const w = await opened()
    const dialog = w.find('[role=alertdialog]')
    expect(dialog.attributes('aria-label')).toBe('Confirm clean state')
    expect(dialog.text()).toContain('Archive the progress?')
    expect(document.activeElement?.textContent).toBe('Keep it')
  })

  it('answers no on Escape and gives the focus back to the opener', async () => {
    const w = await opened()
    await w.find('[role=alertdialog]').trigger('keydown', { key: 'Escape' })
    expect(w.vm.answers).toEqual(['no'])
    expect(w.find('[role=alertdialog]').exists()).toBe(false)
    expect(document.activeElement?.id).toBe('opener')
  })

  it('confirms only through its confirm button', async () => {
    const w = await opened()
    await w.findAll('button').find((b) => b.text() === 'Yes, clean state')!.trigger('click')
    expect(w.vm.answers).toEqual(['yes'])
  })
})
