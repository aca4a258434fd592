// ANSI colour codes in program output, turned into styled pieces (SGR: bold, the 8
// and bright 8 foreground colours, reset); every other escape sequence is dropped,
// so no raw `\x1b[...` reaches the page.

export type Piece = { text: string; cls: string }

// CSI sequences (ESC [ params letter) and the two-byte escapes (ESC + one char).
const ESCAPE = /\x1b\[([0-9;?]*)([@-~])|\x1b[@-Z\\-_]/g

const NAMES = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white']

/** The line without escape sequences: what is searched and copied. */
export function plain(line: string): string {
  return line.includes('\x1b') ? line.replace(ESCAPE, '') : line
}

export function pieces(line: string): Piece[] {
  if (!line.includes('\x1b')) return [{ text: line, cls: '' }]
  const out: Piece[] = []
  let fg = ''
  let bold = false
  let last = 0
  const push = (text: string) => {
    if (!text) return
    const cls = [fg && `ansi-${fg}`, bold && 'ansi-bold'].filter(Boolean).join(' ')
    out.push({ text, cls })
  }
  for (const m of line.matchAll(ESCAPE)) {
    push(line.slice(last, m.index))
    last = m.index + m[0].length
    if (m[2] !== 'm') continue
    const codes = (m[1] ?? '').split(';').map((c) => (c === '' ? 0 : Number(c)))
    for (const c of codes) {
      if (c === 0) {
        fg = ''
        bold = false
      } else if (c === 1) bold = true
      else if (c === 22) bold = false
      else if (c >= 30 && c <= 37) fg = NAMES[c - 30]!
      else if (c >= 90 && c <= 97) fg = `bright-${NAMES[c - 90]!}`
      else if (c === 39) fg = ''
    }
  }
  push(line.slice(last))
  return out
}
