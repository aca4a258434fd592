import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import StepStatusBadge from './StepStatusBadge.vue'
import type { StepStatus } from '../bindings/StepStatus'

const ALL: StepStatus[] = ['pending', 'running', 'completed', 'failed', 'skipped', 'interrupted']

describe('StepStatusBadge', () => {
  it('draws a shape for every status and says it in words, with no glyph a font may lack', () => {
    const shapes = new Set<string>()
    for (const status of ALL) {
      const w = mount(StepStatusBadge, { props: { status } })
      expect(w.text()).toBe(status)
      const svg = w.find('svg')
      expect(svg.attributes('aria-hidden')).toBe('true')
      expect(svg.findAll('path, circle, rect').length).toBeGreaterThan(0)
      shapes.add(svg.html())
      // Text is the status word alone: no symbol character that needs a font.
      expect(/[^\x20-\x7e]/.test(w.text())).toBe(false)
    }
    expect(shapes.size).toBe(ALL.length)
  })
})
