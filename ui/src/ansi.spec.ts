import { describe, expect, it } from 'vitest'
import { pieces, plain } from './ansi'

describe('ANSI colours', () => {
  it('turns colour codes into styled pieces and leaves no escape behind', () => {
    const line = '\x1b[0;32mok: [localhost]\x1b[0m done \x1b[1;31mfatal\x1b[0m'
    expect(pieces(line)).toEqual([
      { text: 'ok: [localhost]', cls: 'ansi-green' },
      { text: ' done ', cls: '' },
      { text: 'fatal', cls: 'ansi-red ansi-bold' },
    ])
    expect(plain(line)).toBe('ok: [localhost] done fatal')
  })

  it('drops escape sequences it does not draw (cursor moves, bright colours kept)', () => {
    expect(plain('\x1b[2K\x1b[1Gprogress 50%')).toBe('progress 50%')
    expect(pieces('\x1b[93mwarn\x1b[39m')).toEqual([{ text: 'warn', cls: 'ansi-bright-yellow' }])
  })

  it('keeps a line without escapes as it is', () => {
    expect(pieces('plain line')).toEqual([{ text: 'plain line', cls: '' }])
    expect(plain('plain line')).toBe('plain line')
  })
})
