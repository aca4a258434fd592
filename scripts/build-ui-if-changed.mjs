#!/usr/bin/env node
// Builds the UI (ui/ -> ui/dist) only when what it is built from changed since its last
// successful build, and says which files changed when it does build.
//
// Why: `vite build` rewrites every file in ui/dist even when nothing changed, and the
// app crate's build script watches ui/dist, so an unconditional UI build makes cargo
// rebuild the desktop app (a minute or two on 2 cores) at every launch.
//
// The inputs are the contents (SHA-256) of ui/ without ui/dist and any node_modules
// folder (vitest's cache lives in ui/node_modules), package.json,
// package-lock.json and the installed packages' lock (node_modules/.package-lock.json).
// Their listing is kept in target/launch-stamps/ui.json, written only after a build
// succeeded and removed before a build starts, so a failed or interrupted build is
// built again at the next launch.
//
// Environment (for tests): THINKUBE_BUILD_ROOT is the project folder (default: this
// script's parent folder); THINKUBE_UI_BUILD is the build command run by `sh -c`
// (default: `npm run --silent build`).
import { createHash } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Files outside ui/ that the build depends on, relative to the project root. */
const EXTRA_INPUTS = ['package.json', 'package-lock.json', join('node_modules', '.package-lock.json')]
/** How many changed files are named before "and N more". */
const NAMED = 10

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/** Every file below `dir`, except in `skip` (the build's output) and in node_modules
 * folders (tools' caches: vitest keeps its results in ui/node_modules/.vite). */
function walk(dir, skip, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() && (path === skip || entry.name === 'node_modules')) continue
    if (entry.isDirectory()) walk(path, skip, out)
    else if (entry.isFile()) out.push(path)
  }
}

/** The build's inputs: relative path (with `/`) -> SHA-256 of the contents. */
function inputs(root) {
  const files = []
  walk(join(root, 'ui'), join(root, 'ui', 'dist'), files)
  for (const extra of EXTRA_INPUTS) {
    if (existsSync(join(root, extra))) files.push(join(root, extra))
  }
  const listing = {}
  for (const file of files.sort()) listing[relative(root, file).split(sep).join('/')] = sha256(file)
  return listing
}

/** What differs between two listings, as lines such as "ui/src/App.vue changed". */
function changes(before, now) {
  const lines = []
  for (const path of Object.keys(now).sort()) {
    if (!(path in before)) lines.push(`${path} added`)
    else if (before[path] !== now[path]) lines.push(`${path} changed`)
  }
  for (const path of Object.keys(before).sort()) {
    if (!(path in now)) lines.push(`${path} removed`)
  }
  return lines
}

function readStamp(path) {
  try {
    const stamp = JSON.parse(readFileSync(path, 'utf8'))
    return stamp && typeof stamp.files === 'object' && stamp.files !== null ? stamp.files : null
  } catch {
    return null // missing or unreadable: build, which writes a good one
  }
}

/** Why the UI must be built, or null when ui/dist is up to date. */
function reason(root, stampPath, now) {
  if (!existsSync(join(root, 'ui', 'dist', 'index.html'))) return 'ui/dist has not been built'
  const before = readStamp(stampPath)
  if (before === null) return 'no record of an earlier build'
  const lines = changes(before, now)
  if (lines.length === 0) return null
  const named = lines.slice(0, NAMED).join(', ')
  return lines.length > NAMED ? `${named} and ${lines.length - NAMED} more` : named
}

function main() {
  const root = process.env.THINKUBE_BUILD_ROOT || join(dirname(fileURLToPath(import.meta.url)), '..')
  const command = process.env.THINKUBE_UI_BUILD || 'npm run --silent build'
  const stampPath = join(root, 'target', 'launch-stamps', 'ui.json')
  const now = inputs(root)
  const why = reason(root, stampPath, now)
  if (why === null) {
    console.log('== UI: up to date (nothing in ui/ or the npm packages changed since its last build)')
    return 0
  }
  console.log(`== UI: building, because: ${why}`)
  rmSync(stampPath, { force: true })
  const build = spawnSync('sh', ['-c', command], { cwd: root, stdio: 'inherit' })
  if (build.status !== 0) {
    const how = build.status === null ? `was stopped by ${build.signal}` : `exited ${build.status}`
    console.error(`UI build failed (\`${command}\` ${how}): fix the error above; the next launch builds it again`)
    return build.status || 1
  }
  mkdirSync(dirname(stampPath), { recursive: true })
  // The inputs as they were when the build started: an edit made during the build
  // does not match them, so the next launch builds again.
  writeFileSync(`${stampPath}.tmp`, JSON.stringify({ files: now }, null, 1))
  renameSync(`${stampPath}.tmp`, stampPath)
  return 0
}

process.exitCode = main()
