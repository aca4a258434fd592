// 19. A desktop notification when a run ends (#14): the app tells the desktop's
// notification service over the session bus. Here the bus is a dbus-daemon of the
// test's own and the service is dunst, a real notification daemon, on the test's X
// display; what it was told is read back from dunst's history.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import { promisify } from 'node:util'
import {
  clickButton, configureThisMachine, display, launch, newWorld, stopDisplay, until, waitForText, writePlan,
} from './harness.mjs'

const run = promisify(execFile)
const started = []
after(async () => {
  for (const child of started) child.kill()
  await stopDisplay()
})

const PLAN = `id: site
title: The site
phases:
  - id: one
    title: One phase
    steps:
      - id: prepare
        title: Prepare
        command: ["true"]
      - id: serve
        title: Serve the site
        command: [sh, -c, "test -f fixed || { echo no free port >&2; exit 3; }"]
`

/** A session bus and dunst on it; resolves once dunst answers on the bus. */
async function notificationService(world) {
  const address = `unix:path=${join(world.root, 'bus')}`
  const bus = spawn('dbus-daemon', ['--session', `--address=${address}`, '--nofork', '--print-address'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  started.push(bus)
  await new Promise((ok, fail) => {
    bus.stdout.once('data', ok)
    bus.once('exit', (c) => fail(new Error(`dbus-daemon exited with ${c}`)))
  })
  const rc = join(world.root, 'dunstrc')
  writeFileSync(rc, '[global]\n')
  const env = { ...process.env, DISPLAY: await display(), DBUS_SESSION_BUS_ADDRESS: address }
  const dunst = spawn('dunst', ['-conf', rc], { env, stdio: 'ignore' })
  started.push(dunst)
  const gdbus = async (method) => {
    const { stdout } = await run('gdbus', [
      'call', '--session', '--dest', 'org.freedesktop.Notifications',
      '--object-path', '/org/freedesktop/Notifications', '--method', method,
    ], { env })
    return stdout
  }
  await until('dunst on the bus', () =>
    gdbus('org.freedesktop.Notifications.GetServerInformation').then((o) => o.includes('dunst'), () => false))
  return {
    address,
    /** Every notification dunst was given, as gdbus prints its history. */
    async history() {
      // dunst keeps a notification in its history once it is closed.
      await gdbus('org.dunstproject.cmd0.NotificationCloseAll')
      return gdbus('org.dunstproject.cmd0.NotificationListHistory')
    },
  }
}

test('a run that fails, then one that completes, each tell the desktop how it ended', async () => {
  const world = newWorld('notify')
  const service = await notificationService(world)
  const plan = writePlan(world, 'site', { 'plan.yaml': PLAN })
  const { browser, close } = await launch(world, ['--plan', plan], { DBUS_SESSION_BUS_ADDRESS: service.address })
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await configureThisMachine(browser)
    await waitForText(browser, '[data-testid=run-ended]', 'A step failed', 60_000)
    const failed = await until('the failure notification', () =>
      service.history().then((h) => (h.includes('Deployment failed') ? h : null)))
    assert.match(failed, /Serve the site failed: /)
    assert.match(failed, /Fix the cause, then Retry failed\./)
    assert.doesNotMatch(failed, /Deployment completed/)

    writeFileSync(join(dirname(plan), 'fixed'), '')
    await clickButton(browser, 'Retry failed')
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
    const done = await until('the completion notification', () =>
      service.history().then((h) => (h.includes('Deployment completed') ? h : null)))
    assert.match(done, /The site: 2 steps on this machine in \d+ s\./)
  } finally {
    await close()
  }
})
