/*! actionheroClient.js -- the browser client for ahtwist's websocket server (MIT). */
/*
 * Plain ES2017, no build step: load it with
 *   <script src="/public/javascript/actionheroClient.js"></script>
 * and use the global `ActionheroClient` (or require() it where `module` exists).
 *
 * It speaks ahtwist's websocket protocol (RFC 6455 at /ws, one JSON object per
 * text frame; see docs/protocol-websocket.md):
 *
 *   const client = new ActionheroClient({ url: 'ws://localhost:8080/ws' })
 *   await client.connect()                       // resolves with detailsView data
 *   const reply = await client.action('randomNumber')
 *   client.on('say', (message) => console.log(message.from, message.message))
 *   await client.roomAdd('defaultRoom')
 *   await client.say('defaultRoom', 'hello')
 *
 * Every method takes an optional callback as its last argument; without one it
 * returns a Promise.  Like ActionHero's own client, `connect(cb)` calls
 * `cb(error, details)` and every other method calls `cb(reply)`: the server's
 * reply object, whose `error` key is set when the server refused.  Promises
 * resolve with that reply and reject only when no reply can come (timeout,
 * connection lost, not connected, network failure); a callback then gets
 * `{ error: <text> }`.
 *
 * Replies are matched to requests by `messageId` (the server echoes it), so
 * concurrent requests and out-of-order replies are fine.  When the connection
 * drops (anything but a normal close, code 1000) the client reconnects with
 * exponential back-off and joins again the rooms it was in.  With
 * `resume: true` it joins rooms with offsets on and, after a reconnect, asks
 * for the messages it missed (roomAdd with `since`): they arrive as ordinary
 * `say` events before any live one, and a `resumed` event tells the app
 * `{room, recovered, offset, epoch}` (`recovered` false: some may be lost).
 * While it is not
 * connected, `action()` falls back to HTTP (`POST <apiUrl>/<action>`); other
 * requests made while (re)connecting wait for the connection.
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory()
  } else {
    root.ActionheroClient = factory()
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict'

  const DEFAULTS = {
    url: null, // ws(s)://host/ws; default: this page's host and servers.websocket.path '/ws'
    apiUrl: null, // http(s)://host/api for the HTTP fallback; default: derived from url
    path: '/ws',
    timeout: 10000, // ms to wait for each reply (and for the connection to open)
    reconnect: true,
    reconnectDelay: 500, // ms before the first reconnection attempt
    reconnectDelayMax: 10000, // the back-off doubles up to this
    reconnectAttempts: Infinity,
    httpFallback: true,
    resume: false, // join rooms with offsets; resume them after a reconnect
    WebSocket: null, // constructor; default: the global WebSocket
    fetch: null // function; default: the global fetch
  }

  const NORMAL_CLOSE = 1000

  function locationOf () {
    return typeof location !== 'undefined' && location && /^https?:$/.test(location.protocol)
      ? location
      : null
  }

  function defaultUrl (path) {
    const here = locationOf()
    if (!here) throw new Error('ActionheroClient: options.url is required outside a web page')
    return (here.protocol === 'https:' ? 'wss://' : 'ws://') + here.host + path
  }

  function apiUrlFor (wsUrl) {
    const here = locationOf()
    const match = /^ws(s?):\/\/([^/?#]+)/.exec(wsUrl)
    if (match) return 'http' + match[1] + '://' + match[2] + '/api'
    return here ? here.origin + '/api' : '/api'
  }

  function transportError (text) {
    const error = new Error(text)
    error.reply = { error: text }
    return error
  }

  /** Call `callback(...)` when given, else return a Promise for `promise`. */
  function settle (promise, callback, style) {
    if (typeof callback !== 'function') return promise
    promise.then(
      (value) => (style === 'node' ? callback(null, value) : callback(value)),
      (error) => (style === 'node' ? callback(error) : callback(error.reply || { error: String(error.message || error) }))
    )
    return undefined
  }

  class ActionheroClient {
    constructor (options) {
      this.options = Object.assign({}, DEFAULTS, options || {})
      this.url = this.options.url || defaultUrl(this.options.path)
      this.apiUrl = this.options.apiUrl || apiUrlFor(this.url)
      /** 'disconnected' | 'connecting' | 'connected' | 'reconnecting' */
      this.state = 'disconnected'
      this.id = null
      this.fingerprint = null
      this.remoteIP = null
      this.welcomeMessage = null
      /** rooms this client is in (joined again after a reconnect), join order */
      this.rooms = []
      /** with `resume`: room -> {offset, epoch} of the last message seen */
      this.positions = {}
      this.messageCount = 0
      this._listeners = {}
      this._pending = new Map() // messageId -> {resolve, reject, timer}
      this._queue = [] // frames waiting for the connection
      this._nextId = 1
      this._ws = null
      this._attempt = 0
      this._reconnectTimer = null
      this._openTimer = null
      this._wanted = false // true between connect() and disconnect()
      this._everConnected = false
    }

    // --- events -------------------------------------------------------------

    on (event, listener) {
      (this._listeners[event] = this._listeners[event] || []).push(listener)
      return this
    }

    off (event, listener) {
      const list = this._listeners[event]
      if (list) this._listeners[event] = listener ? list.filter((l) => l !== listener) : []
      return this
    }

    once (event, listener) {
      const wrapper = (...args) => {
        this.off(event, wrapper)
        listener.apply(this, args)
      }
      return this.on(event, wrapper)
    }

    emit (event, ...args) {
      const list = (this._listeners[event] || []).slice()
      for (const listener of list) {
        try {
          listener.apply(this, args)
        } catch (error) {
          if (event !== 'error') this.emit('error', error)
          else if (typeof console !== 'undefined') console.error(error)
        }
      }
      return list.length > 0
    }

    // --- connection -----------------------------------------------------------

    /** Open the websocket; resolves with this connection's detailsView data. */
    connect (callback) {
      const promise = new Promise((resolve, reject) => {
        if (this.state === 'connected') {
          this.detailsView().then((reply) => resolve(reply.data), reject)
          return
        }
        this._wanted = true
        const onConnected = () => {
          cleanup()
          this.detailsView().then((reply) => {
            if (reply.error) return reject(transportError(reply.error))
            const details = reply.data
            this.id = details.id
            this.fingerprint = details.fingerprint
            this.remoteIP = details.remoteIP
            resolve(details)
          }, reject)
        }
        const onFailed = (error) => {
          cleanup()
          reject(error)
        }
        const cleanup = () => {
          this.off('connected', onConnected)
          this.off('_connectFailed', onFailed)
        }
        this.on('connected', onConnected)
        this.on('_connectFailed', onFailed)
        if (this.state === 'disconnected') this._open()
      })
      return settle(promise, callback, 'node')
    }

    /** Close for good (no reconnection, rooms forgotten); resolves once closed. */
    disconnect (callback) {
      const promise = new Promise((resolve) => {
        this._wanted = false
        clearTimeout(this._reconnectTimer)
        this._reconnectTimer = null
        const ws = this._ws
        const done = () => {
          this.rooms = []
          this.positions = {}
          this._everConnected = false
          resolve()
        }
        if (!ws || ws.readyState === 3) {
          this._ws = null
          this._setDisconnected(transportError('disconnected'))
          done()
          return
        }
        ws.addEventListener('close', done)
        if (ws.readyState === 0) {
          // not open yet: closing now is the only way to stop it
          try { ws.close() } catch (e) { /* ignore */ }
        } else {
          ws.close(NORMAL_CLOSE)
        }
      })
      return settle(promise, callback, 'node')
    }

    _open () {
      const Ctor = this.options.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null)
      if (!Ctor) throw new Error('ActionheroClient: no WebSocket implementation')
      this.state = this._everConnected ? 'reconnecting' : 'connecting'
      let ws
      try {
        ws = new Ctor(this.url)
      } catch (error) {
        this._lost(error)
        return
      }
      this._ws = ws
      this._openTimer = setTimeout(() => {
        if (ws.readyState === 0) {
          try { ws.close() } catch (e) { /* ignore */ }
          this.emit('timeout', { event: 'connect', url: this.url })
        }
      }, this.options.timeout)
      ws.addEventListener('open', () => this._opened(ws))
      ws.addEventListener('message', (event) => this._frame(ws, event.data))
      ws.addEventListener('error', () => {
        if (ws === this._ws) this.emit('error', new Error('websocket error (' + this.url + ')'))
      })
      ws.addEventListener('close', (event) => {
        if (ws === this._ws) this._closed(event)
      })
    }

    _opened (ws) {
      if (ws !== this._ws) return
      clearTimeout(this._openTimer)
      const reconnected = this._everConnected
      this._everConnected = true
      this._attempt = 0
      this.state = 'connected'
      const rooms = this.rooms.slice()
      // rejoin first, so no request made in a 'connected' handler overtakes it
      if (reconnected) for (const room of rooms) this._rejoin(room)
      const queued = this._queue
      this._queue = []
      for (const item of queued) this._transmit(item)
      this.emit('connected')
      if (reconnected) this.emit('reconnect', { rooms })
    }

    _rejoin (room) {
      const position = this.options.resume ? this.positions[room] : null
      const since = position ? { offset: position.offset, epoch: position.epoch } : null
      this._join(room, since).then((reply) => {
        if (reply.error && !/already in this room/.test(reply.error)) {
          this._forgetRoom(room)
          this.emit('error', new Error('could not rejoin ' + room + ': ' + reply.error))
        } else if (since && reply.data && typeof reply.data === 'object') {
          this.emit('resumed', Object.assign({ room: room }, reply.data))
        }
      }, () => {})
    }

    /** roomAdd, with `since` when resuming (`{}`: offsets on, from now). */
    _join (room, since) {
      const frame = { event: 'roomAdd', room: room }
      if (this.options.resume) frame.since = since || {}
      return this._request(frame).then((reply) => {
        if (!reply.error || /already in this room/.test(reply.error)) this._rememberRoom(room)
        const data = reply.data
        if (!reply.error && data && typeof data === 'object') {
          const known = this.positions[room]
          // recovered: the missed messages that follow move the position on
          if (!known || !data.recovered || known.epoch !== data.epoch) {
            this.positions[room] = { offset: data.offset, epoch: data.epoch }
          }
        }
        return reply
      })
    }

    /** A chat message with an offset moves its room's position on. */
    _seen (message) {
      const known = this.positions[message.room]
      if (typeof message.offset !== 'number' || !known) return
      if (known.epoch !== message.epoch || message.offset > known.offset) {
        this.positions[message.room] = { offset: message.offset, epoch: message.epoch }
      }
    }

    _closed (event) {
      clearTimeout(this._openTimer)
      this._ws = null
      const wasConnected = this.state === 'connected'
      const code = event && event.code
      const error = transportError(wasConnected ? 'connection lost' : 'could not connect to ' + this.url)
      if (!this._everConnected) {
        this._setDisconnected(error)
        this.emit('_connectFailed', error)
        return
      }
      if (wasConnected) this._failPending(error)
      if (this._wanted && this.options.reconnect && code !== NORMAL_CLOSE) {
        if (wasConnected) this.emit('disconnected', { code: code, reason: event && event.reason })
        this._scheduleReconnect()
      } else {
        this._setDisconnected(error, { code: code, reason: event && event.reason })
      }
    }

    _lost (error) {
      this._ws = null
      if (!this._everConnected) {
        this._setDisconnected(error)
        this.emit('_connectFailed', error)
      } else {
        this._scheduleReconnect()
      }
    }

    _setDisconnected (error, details) {
      const was = this.state
      this.state = 'disconnected'
      this._wanted = false
      this._failPending(error)
      const queued = this._queue
      this._queue = []
      for (const item of queued) item.reject(error)
      if (was !== 'disconnected' && this._everConnected) this.emit('disconnected', details || {})
    }

    _scheduleReconnect () {
      if (this._attempt >= this.options.reconnectAttempts) {
        this._setDisconnected(transportError('gave up reconnecting'))
        return
      }
      this._attempt += 1
      const delay = Math.min(
        this.options.reconnectDelayMax,
        this.options.reconnectDelay * Math.pow(2, this._attempt - 1)
      )
      this.state = 'reconnecting'
      this.emit('reconnecting', { attempt: this._attempt, delay: delay })
      clearTimeout(this._reconnectTimer)
      this._reconnectTimer = setTimeout(() => {
        this._reconnectTimer = null
        if (this._wanted) this._open()
      }, delay)
    }

    _failPending (error) {
      const pending = this._pending
      this._pending = new Map()
      for (const entry of pending.values()) {
        clearTimeout(entry.timer)
        entry.reject(error)
      }
    }

    // --- frames -----------------------------------------------------------------

    _frame (ws, data) {
      if (ws !== this._ws || typeof data !== 'string') return
      let message
      try {
        message = JSON.parse(data)
      } catch (error) {
        this.emit('error', new Error('not JSON from the server: ' + data.slice(0, 80)))
        return
      }
      if (!message || typeof message !== 'object') return
      this.emit('message', message)
      const context = message.context
      if (context === 'response') {
        if (typeof message.messageCount === 'number') this.messageCount = message.messageCount
        const key = JSON.stringify(message.messageId)
        const entry = this._pending.get(key)
        if (entry) {
          this._pending.delete(key)
          clearTimeout(entry.timer)
          entry.resolve(message)
        }
      } else if (context === 'user') {
        if (this.options.resume) this._seen(message)
        this.emit('say', message)
      } else if (context === 'alert') {
        this.emit('alert', message)
      } else if (context === 'api') {
        if (message.welcome) {
          this.welcomeMessage = message.welcome
          this.emit('welcome', message)
        }
        this.emit('api', message)
      }
    }

    /** Send one event and resolve with the reply carrying its messageId. */
    _request (frame, description) {
      return new Promise((resolve, reject) => {
        const messageId = this._nextId++
        const item = {
          frame: Object.assign({}, frame, { messageId: messageId }),
          key: JSON.stringify(messageId),
          description: description || frame.event,
          resolve: resolve,
          reject: reject
        }
        if (this.state === 'connected') {
          this._transmit(item)
        } else if (this._wanted && (this.state === 'connecting' || this.state === 'reconnecting')) {
          this._queue.push(item)
          item.queueTimer = setTimeout(() => {
            const at = this._queue.indexOf(item)
            if (at >= 0) {
              this._queue.splice(at, 1)
              this.emit('timeout', { event: item.description, messageId: messageId })
              reject(transportError('timeout'))
            }
          }, this.options.timeout)
        } else {
          reject(transportError('not connected'))
        }
      })
    }

    _transmit (item) {
      clearTimeout(item.queueTimer)
      const timer = setTimeout(() => {
        if (this._pending.get(item.key) === entry) {
          this._pending.delete(item.key)
          this.emit('timeout', { event: item.description, messageId: item.frame.messageId })
          item.reject(transportError('timeout'))
        }
      }, this.options.timeout)
      const entry = { resolve: item.resolve, reject: item.reject, timer: timer }
      this._pending.set(item.key, entry)
      try {
        this._ws.send(JSON.stringify(item.frame))
      } catch (error) {
        this._pending.delete(item.key)
        clearTimeout(timer)
        item.reject(transportError('send failed: ' + error.message))
      }
    }

    // --- the API ------------------------------------------------------------------

    /** Run an action; over HTTP (POST <apiUrl>/<name>) when not connected. */
    action (name, params, callback) {
      if (typeof params === 'function') {
        callback = params
        params = {}
      }
      params = Object.assign({}, params || {}, { action: name })
      let promise
      if (this.state === 'connected' || !this.options.httpFallback) {
        promise = this._request({ event: 'action', params: params }, name)
      } else {
        promise = this._httpAction(name, params)
      }
      return settle(promise, callback)
    }

    _httpAction (name, params) {
      const fetchFn = this.options.fetch || (typeof fetch !== 'undefined' ? (url, init) => fetch(url, init) : null)
      if (!fetchFn) return Promise.reject(transportError('not connected'))
      let timer
      const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => {
          this.emit('timeout', { event: name, http: true })
          reject(transportError('timeout'))
        }, this.options.timeout)
      })
      const request = fetchFn(this.apiUrl + '/' + encodeURIComponent(name), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(params),
        credentials: 'same-origin'
      }).then(
        (response) => response.json(),
        (error) => {
          throw transportError('http request failed: ' + (error && error.message))
        }
      )
      return Promise.race([request, timeout]).then(
        (value) => {
          clearTimeout(timer)
          return value
        },
        (error) => {
          clearTimeout(timer)
          throw error
        }
      )
    }

    /** Say `message` to `room` (the client must be in it). */
    say (room, message, callback) {
      return settle(this._request({ event: 'say', room: room, message: message }), callback)
    }

    /** Join `room`; it is joined again after every reconnection (with
     * `resume`: from the last message seen; the reply's `data` is then
     * `{recovered, offset, epoch}`). */
    roomAdd (room, callback) {
      return settle(this._join(room, null), callback)
    }

    /** Leave `room`. */
    roomLeave (room, callback) {
      const promise = this._request({ event: 'roomLeave', room: room }).then((reply) => {
        if (!reply.error || /not in this room/.test(reply.error)) this._forgetRoom(room)
        return reply
      })
      return settle(promise, callback)
    }

    /** The members of `room` (the client must be in it). */
    roomView (room, callback) {
      return settle(this._request({ event: 'roomView', room: room }), callback)
    }

    /** This connection's details (id, fingerprint, rooms, counters). */
    detailsView (callback) {
      return settle(this._request({ event: 'detailsView' }), callback)
    }

    /** The documentation of every action. */
    documentation (callback) {
      return settle(this._request({ event: 'documentation' }), callback)
    }

    /** A static file: `{content, mime, length, lastModified, error}`. */
    file (name, callback) {
      return settle(this._request({ event: 'file', file: name }), callback)
    }

    _rememberRoom (room) {
      if (this.rooms.indexOf(room) < 0) this.rooms.push(room)
    }

    _forgetRoom (room) {
      const at = this.rooms.indexOf(room)
      if (at >= 0) this.rooms.splice(at, 1)
      delete this.positions[room]
    }
  }

  ActionheroClient.defaults = DEFAULTS
  return ActionheroClient
})
