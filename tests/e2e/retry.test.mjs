// 2. A failing step: its task is shown; the cause fixed; Retry failed runs only it.
// Relaunched, the window shows each attempt's log from its file (it said "No output
// yet": the logs lived only in the memory of the window that ran them).
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import {
  clickButton, configureThisMachine, launch, newWorld, screenshot, statusJson, stepStatuses,
  stopDisplay, waitForText, writePlan,
} from './harness.mjs'

after(stopDisplay)

const PLAYBOOK = `- name: Needs the fix
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: First task works
      ansible.builtin.debug:
        msg: fine
    - name: Second task needs the fix file
      ansible.builtin.fail:
        msg: "the fix file is missing: {{ playbook_dir }}/fixed_${'long-path-segment_'.repeat(24)}"
      when: not ((playbook_dir + '/fixed') is exists)
`

const PLAN = `id: fragile
title: A plan whose second step fails until it is fixed
phases:
  - id: one
    title: First phase
    steps:
      - id: count-a
        title: Count A
        command: [sh, -c, "echo run >> count-a"]
      - id: fragile
        title: Fragile playbook
        playbook: fragile.yaml
  - id: two
    title: Second phase
    steps:
      - id: count-c
        title: Count C
        command: [sh, -c, "echo run >> count-c"]
`

test('a failed step shows its task; after the fix, Retry failed runs only what is left', async () => {
  const world = newWorld('retry')
  const plan = writePlan(world, 'fragile', { 'plan.yaml': PLAN, 'fragile.yaml': PLAYBOOK })
  const dir = dirname(plan)
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await configureThisMachine(browser)
    await waitForText(browser, '[data-testid=run-ended]', 'A step failed', 120_000)
    await waitForText(browser, '[data-testid=failure-task]', 'Second task needs the fix file')
    await waitForText(browser, '[data-testid=failure-message]', 'the fix file is missing')
    await screenshot(browser, 'deploy-failed')
    // A long message without spaces wraps inside the failure panel: nothing overflows
    // the window sideways.
    const overflow = await browser.execute(() => {
      const panel = document.querySelector('.failure')?.getBoundingClientRect()
      return { page: document.documentElement.scrollWidth - document.documentElement.clientWidth, right: panel ? panel.right - window.innerWidth : null }
    })
    assert.ok(overflow.page <= 0 && overflow.right !== null && overflow.right <= 0, `the failure panel overflows: ${JSON.stringify(overflow)}`)
    assert.deepEqual(await stepStatuses(browser), { 'count-a': 'completed', fragile: 'failed', 'count-c': 'pending' })

    writeFileSync(join(dir, 'fixed'), '')
    await clickButton(browser, 'Retry failed')
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 120_000)
    assert.deepEqual(await stepStatuses(browser), { 'count-a': 'completed', fragile: 'completed', 'count-c': 'completed' })
    assert.equal(readFileSync(join(dir, 'count-a'), 'utf8'), 'run\n', 'a completed step ran again')
    assert.equal(readFileSync(join(dir, 'count-c'), 'utf8'), 'run\n')
    const v = await statusJson(world)
    assert.equal(v.deployment.status, 'completed')
    assert.equal(v.steps.find((s) => s.id === 'fragile').attempts, 2)

    await clickButton(browser, 'History')
    await waitForText(browser, 'section.history', 'Retry of')
    await screenshot(browser, 'history')
  } finally {
    await close()
  }

  const again = await launch(world, ['--plan', plan])
  try {
    await waitForText(again.browser, '[data-testid=existing-deployment]', 'completed')
    await clickButton(again.browser, 'View deployment')
    await clickButton(again.browser, 'Fragile playbook')
    await waitForText(again.browser, '[data-testid=log-heading]', 'Log of Fragile playbook — attempt 2 of 2')
    await waitForText(again.browser, '[role=log]', 'Second task needs the fix file')
    const picker = await again.browser.$('.log-panel select')
    await picker.selectByAttribute('value', '1')
    await waitForText(again.browser, '[data-testid=log-heading]', 'attempt 1 of 2')
    await waitForText(again.browser, '[data-testid=log-attempt-state]', 'failed')
    await waitForText(again.browser, '[role=log]', 'the fix file is missing')
    await screenshot(again.browser, 'deploy-earlier-attempt')
  } finally {
    await again.close()
  }
})
