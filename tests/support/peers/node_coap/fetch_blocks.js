'use strict'
// node-coap (npm `coap`) fetching a firmware image block-wise (Block2) from a CoAP URI,
// from block <num> on in blocks of <size> bytes; node-coap asks for each next block itself
// and hands over the bytes reassembled. Prints one JSON line: the response code, the
// length and SHA-256 of what it got, and the response's options.
// usage: node fetch_blocks.js <coap uri> <num> <size>
const coap = require('coap')
const crypto = require('crypto')

const [uri, numText, sizeText] = process.argv.slice(2)
const url = new URL(uri)
const num = Number(numText)
const szx = Math.log2(Number(sizeText)) - 4
// RFC 7959 2.2: NUM, M (0 in a request) and SZX in 1 to 3 bytes
const block2 = num <= 0xf ? [(num << 4) | szx]
  : num <= 0xfff ? [num >> 4, ((num & 0xf) << 4) | szx]
    : [num >> 12, (num >> 4) & 0xff, ((num & 0xf) << 4) | szx]

const timer = setTimeout(() => { console.error('no answer within 30 s'); process.exit(3) }, 30000)
const req = coap.request({
  hostname: url.hostname,
  port: Number(url.port),
  pathname: url.pathname,
  method: 'GET',
  confirmable: true,
  agent: new coap.Agent({ type: 'udp4' })
})
req.setOption('Block2', Buffer.from(block2))
req.on('response', (res) => {
  clearTimeout(timer)
  const options = {}
  for (const o of res.options) {
    options[o.name] = Buffer.isBuffer(o.value) ? o.value.toString('hex') : String(o.value)
  }
  console.log(JSON.stringify({
    code: res.code,
    length: res.payload.length,
    sha256: crypto.createHash('sha256').update(res.payload).digest('hex'),
    options
  }))
  process.exit(0)
})
req.on('error', (e) => { clearTimeout(timer); console.error(String(e)); process.exit(2) })
req.end()
