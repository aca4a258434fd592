// 9. The live log: lines show while the step still runs (the window showed "No
// output yet" / "0 lines" until the step ended, the lines being appended to an
// array the page never saw change).
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import {
  configureThisMachine, launch, newWorld, screenshot, stepStatuses, stopDisplay, waitForText, writePlan,
} from './harness.mjs'

after(stopDisplay)

const PLAN = `id: chatty
title: A step that prints, then waits
phases:
  - id: one
    title: One phase
    steps:
      - id: chatty
        title: Chatty step
        command: [sh, -c, "for i in $(seq 1 40); do echo line-$i; done; while [ ! -f go ]; do sleep 0.1; done; echo line-41"]
`

test('the log shows lines while the step still runs, and a copy of it can be saved', async () => {
  const world = newWorld('livelog')
  const plan = writePlan(world, 'chatty', { 'plan.yaml': PLAN })
  // The desktop's download folder, as xdg-user-dirs names it, of this test's own.
  const downloads = join(world.root, 'downloads')
  mkdirSync(downloads)
  writeFileSync(join(world.xdgConfig, 'user-dirs.dirs'), `XDG_DOWNLOAD_DIR="${downloads}"\n`)
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await configureThisMachine(browser)
    // The step is still waiting for `go`: the 40 lines it printed are in view.
    await waitForText(browser, '[data-testid=log-count]', '40 lines', 60_000)
    await waitForText(browser, '[role=log]', 'line-40')
    assert.equal((await stepStatuses(browser)).chatty, 'running')
    await screenshot(browser, 'live-log')
    writeFileSync(join(dirname(plan), 'go'), '')
    await waitForText(browser, '[data-testid=log-count]', '41 lines', 60_000)
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)

    // "Save a copy": the whole log, as a new file in the download folder.
    const save = await browser.$('button=Save a copy')
    await save.waitForClickable({ timeout: 30_000 })
    await save.click()
    const saved = join(downloads, 'thinkube-chatty-attempt-1.log')
    await waitForText(browser, '[data-testid=log-saved]', saved, 30_000)
    const expected = Array.from({ length: 41 }, (_, i) => `line-${i + 1}\n`).join('')
    assert.equal(readFileSync(saved, 'utf8'), expected, 'the copy is the whole log')
    await save.click()
    await waitForText(browser, '[data-testid=log-saved]', join(downloads, 'thinkube-chatty-attempt-1-2.log'), 30_000)
    assert.deepEqual(readdirSync(downloads).sort(), ['thinkube-chatty-attempt-1-2.log', 'thinkube-chatty-attempt-1.log'])
  } finally {
    await close()
  }
})

const PLAYBOOK = `- name: Waits for go
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
    - name: Wait for go
      ansible.builtin.wait_for:
        path: "{{ playbook_dir }}/go"
        timeout: 120
`

const PLAYBOOK_PLAN = `id: waiting-playbook
title: A playbook that waits
phases:
  - id: one
    title: One phase
    steps:
      - id: wait
        title: Waiting playbook
        playbook: wait.yaml
`

// The running playbook's task and per-host counts come from its callback events
// while it runs.
test('the running playbook\'s task and its counts per host show while it runs', async () => {
  const world = newWorld('tally')
  const plan = writePlan(world, 'waiting', { 'plan.yaml': PLAYBOOK_PLAN, 'wait.yaml': PLAYBOOK })
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await configureThisMachine(browser)
    await waitForText(browser, '[data-testid=current-task]', 'Task 2: Wait for go', 120_000)
    // Shown from the same message as the task: the first task's result is counted.
    const cells = await browser.execute(() =>
      [...document.querySelectorAll('.task-counts tr[data-host=localhost] td')].map((td) => td.textContent))
    assert.deepEqual(cells, ['1', '0', '0', '0', '0', '0'], 'localhost: ok changed failed skipped unreachable ignored')
    assert.equal((await stepStatuses(browser)).wait, 'running')
    await screenshot(browser, 'task-counts')
    writeFileSync(join(dirname(plan), 'go'), '')
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 120_000)
  } finally {
    await close()
  }
})
