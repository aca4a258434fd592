import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import { allByRole, byRole } from '../test-support'
import TaskCounts from './TaskCounts.vue'

const counts = (over = {}) => ({ ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: 0, ignored: 0, ...over })

describe('TaskCounts', () => {
  it('names the running task and counts per host what the tasks did, marking failures', () => {
    const w = mount(TaskCounts, {
      props: {
        tally: { play: 'Site', task: 'Install k8s', tasks: 4, hosts: { node1: counts({ ok: 3, changed: 1 }), node2: counts({ failed: 1 }) } },
      },
    })
    expect(w.find('[data-testid=current-task]').text()).toBe('Task 4: Install k8s (play Site)')
    const rows = allByRole(w, 'row')
    expect(rows.map((r) => r.text())).toEqual([
      'Hostokchangedfailedskippedunreachableignored', 'node1310000', 'node2001000',
    ])
    expect(w.find('[data-host=node2] td.bad').text()).toBe('1')
    expect(w.find('[data-host=node1] td.bad').exists()).toBe(false)
    expect(byRole(w, 'region', 'Playbook progress').exists()).toBe(true)
  })

  it('says the playbook is starting before its first task', () => {
    const w = mount(TaskCounts, { props: { tally: { play: null, task: null, tasks: 0, hosts: {} } } })
    expect(w.text()).toBe('Starting the playbook…')
    expect(w.find('table').exists()).toBe(false)
  })
})
