// Batch UDP receive for the collector: a thread takes many datagrams per system call (recvmmsg)
// into buffers JavaScript owns, and hands each batch to JavaScript in one call. Node's dgram makes
// one recvmsg, one Buffer and one callback per datagram; at hundreds of thousands of datagrams a
// second that is where the collector's time goes.
//
// Buffers: JavaScript allocates `slots` ArrayBuffers of `batch` × `datagram` bytes and as many
// Int32Arrays of `batch` lengths. The thread fills a free slot, queues (slot, count) through a
// thread-safe function, and takes the next free slot; the slot is free again once the JavaScript
// callback for it has returned (it copies what it keeps). With every slot busy the thread waits and
// the kernel's socket buffer holds what arrives, as it does for dgram.
//
// Only Node-API (no libuv or V8 headers), so it builds with a C compiler and the node-api-headers
// package, against any Node version with Node-API 8.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 16
#define MAX_BATCH 1024
#define CONTROL_BYTES 64

typedef struct {
  int fd;
  int slots;
  int batch;
  int datagram;
  int stopping;
  int started;
  int busy[MAX_SLOTS];
  uint8_t *data[MAX_SLOTS];
  int32_t *lengths[MAX_SLOTS];
  double *times[MAX_SLOTS];
  napi_ref refs[3 * MAX_SLOTS];
  struct mmsghdr *msgs;
  struct iovec *iovs;
  char *control;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t freed;
  napi_threadsafe_function tsfn;
  int error; // errno of a receive that failed for good (the thread stopped)
} receiver_t;

#define CHECK(env, call)                                                                           \
  do {                                                                                             \
    if ((call) != napi_ok) {                                                                       \
      napi_throw_error((env), NULL, "batch-udp: " #call " failed");                               \
      return NULL;                                                                                 \
    }                                                                                              \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value text, error;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, NULL, text, &error);
  napi_value errno_value;
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

// Runs on the JavaScript thread: call back with (slot, count), then free the slot.
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  receiver_t *r = context;
  uintptr_t packed = (uintptr_t)data;
  int slot = (int)(packed & 0xff);
  int count = (int)(packed >> 8);
  if (env != NULL && cb != NULL) {
    napi_value args[2], undefined;
    napi_create_int32(env, slot, &args[0]);
    napi_create_int32(env, count, &args[1]);
    napi_get_undefined(env, &undefined);
    // An exception in the callback is the callback's to handle; it must not stop the thread.
    napi_call_function(env, undefined, cb, 2, args, NULL);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
  }
  pthread_mutex_lock(&r->lock);
  r->busy[slot] = 0;
  pthread_cond_signal(&r->freed);
  pthread_mutex_unlock(&r->lock);
}

static void *receive_loop(void *arg) {
  receiver_t *r = arg;
  int slot = 0;
  for (;;) {
    pthread_mutex_lock(&r->lock);
    while (!r->stopping && r->busy[slot]) pthread_cond_wait(&r->freed, &r->lock);
    int stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    if (stopping) break;
    struct mmsghdr *msgs = r->msgs + (size_t)slot * r->batch;
    for (int i = 0; i < r->batch; i++) {
      msgs[i].msg_hdr.msg_flags = 0;
      msgs[i].msg_hdr.msg_controllen = CONTROL_BYTES;
    }
    // Blocks for the first datagram, then takes what is already queued, up to a batch.
    int n = recvmmsg(r->fd, msgs, (unsigned)r->batch, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      pthread_mutex_lock(&r->lock);
      if (!r->stopping) r->error = errno;
      pthread_mutex_unlock(&r->lock);
      break;
    }
    if (n == 0) break; // shut down
    pthread_mutex_lock(&r->lock);
    stopping = r->stopping;
    if (!stopping) r->busy[slot] = 1;
    pthread_mutex_unlock(&r->lock);
    if (stopping) break;
    int32_t *lengths = r->lengths[slot];
    double *times = r->times[slot];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (int i = 0; i < n; i++) {
      // A datagram longer than the slot's room is cut: say so with a negative length.
      int len = (int)msgs[i].msg_len;
      lengths[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -len : len;
      // When the kernel received it (as tcpdump stamps packets), else when the batch was taken.
      struct timespec ts = now;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) memcpy(&ts, CMSG_DATA(c), sizeof ts);
      times[i] = (double)ts.tv_sec * 1e6 + (double)(ts.tv_nsec / 1000);
    }
    uintptr_t packed = ((uintptr_t)n << 8) | (uintptr_t)slot;
    if (napi_call_threadsafe_function(r->tsfn, (void *)packed, napi_tsfn_blocking) != napi_ok) break;
    slot = (slot + 1) % r->slots;
  }
  return NULL;
}

static void stop(receiver_t *r);

static void finalize_receiver(napi_env env, void *data, void *hint) {
  (void)hint;
  receiver_t *r = data;
  stop(r); // a handle dropped without close(): the thread must not outlive r
  for (int i = 0; i < 3 * r->slots; i++)
    if (r->refs[i] != NULL) napi_delete_reference(env, r->refs[i]);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->freed);
  free(r->msgs);
  free(r->iovs);
  free(r->control);
  free(r);
}

static void stop(receiver_t *r) {
  pthread_mutex_lock(&r->lock);
  int started = r->started;
  r->stopping = 1;
  r->started = 0;
  pthread_cond_broadcast(&r->freed);
  pthread_mutex_unlock(&r->lock);
  if (!started) return;
  // Wakes a thread blocked in recvmmsg (it returns 0).
  shutdown(r->fd, SHUT_RDWR);
  pthread_join(r->thread, NULL);
  close(r->fd);
  r->fd = -1;
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
}

static int get_int(napi_env env, napi_value obj, const char *name, int *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return 0;
  return napi_get_value_int32(env, v, out) == napi_ok;
}

// open({ host, port, reusePort, recvBufferBytes, batch, datagram, buffers, lengths, times }, onBatch)
// (`times`: a Float64Array per slot, receive times in microseconds since the epoch)
// → { handle, port, recvBufferBytes } (recvBufferBytes: what the kernel granted, as getsockopt says).
static napi_value open_receiver(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "open(options, onBatch)");
    return NULL;
  }
  napi_value opts = args[0];
  int port = 0, reuse = 0, rcvbuf = 0, batch = 0, datagram = 0;
  if (!get_int(env, opts, "port", &port) || !get_int(env, opts, "batch", &batch) ||
      !get_int(env, opts, "datagram", &datagram) || !get_int(env, opts, "recvBufferBytes", &rcvbuf)) {
    napi_throw_type_error(env, NULL, "port, batch, datagram and recvBufferBytes must be integers");
    return NULL;
  }
  napi_value reuse_v;
  bool reuse_b = false;
  CHECK(env, napi_get_named_property(env, opts, "reusePort", &reuse_v));
  napi_get_value_bool(env, reuse_v, &reuse_b);
  reuse = reuse_b;
  char host[64];
  size_t host_len = 0;
  napi_value host_v;
  CHECK(env, napi_get_named_property(env, opts, "host", &host_v));
  if (napi_get_value_string_utf8(env, host_v, host, sizeof host, &host_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "host must be a string");
    return NULL;
  }
  napi_value buffers, lengths, times;
  uint32_t slots = 0, nlengths = 0, ntimes = 0;
  CHECK(env, napi_get_named_property(env, opts, "buffers", &buffers));
  CHECK(env, napi_get_named_property(env, opts, "lengths", &lengths));
  CHECK(env, napi_get_named_property(env, opts, "times", &times));
  CHECK(env, napi_get_array_length(env, buffers, &slots));
  CHECK(env, napi_get_array_length(env, lengths, &nlengths));
  CHECK(env, napi_get_array_length(env, times, &ntimes));
  if (slots < 1 || slots > MAX_SLOTS || nlengths != slots || ntimes != slots || batch < 1 || batch > MAX_BATCH || datagram < 64) {
    napi_throw_range_error(env, NULL, "1–16 slots, a length array per slot, 1–1024 a batch, 64 bytes a datagram at least");
    return NULL;
  }
  receiver_t *r = calloc(1, sizeof *r);
  r->fd = -1;
  r->slots = (int)slots;
  r->batch = batch;
  r->datagram = datagram;
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->freed, NULL);
  r->msgs = calloc((size_t)slots * batch, sizeof *r->msgs);
  r->iovs = calloc((size_t)slots * batch, sizeof *r->iovs);
  r->control = calloc((size_t)slots * batch, CONTROL_BYTES);
  napi_value result, handle;
  // From here the handle owns r: the finalizer frees it, so errors below only throw.
  if (napi_create_external(env, r, finalize_receiver, NULL, &handle) != napi_ok) {
    finalize_receiver(env, r, NULL);
    napi_throw_error(env, NULL, "batch-udp: napi_create_external failed");
    return NULL;
  }
  for (uint32_t s = 0; s < slots; s++) {
    napi_value ab, lv, tv;
    void *data = NULL;
    size_t bytes = 0;
    CHECK(env, napi_get_element(env, buffers, s, &ab));
    CHECK(env, napi_get_element(env, lengths, s, &lv));
    CHECK(env, napi_get_element(env, times, s, &tv));
    bool is_ab = false;
    napi_is_arraybuffer(env, ab, &is_ab);
    napi_typedarray_type type;
    size_t len = 0, offset = 0;
    void *ldata = NULL;
    napi_value lab;
    if (!is_ab || napi_get_typedarray_info(env, lv, &type, &len, &ldata, &lab, &offset) != napi_ok ||
        type != napi_int32_array || len < (size_t)batch) {
      napi_throw_type_error(env, NULL, "buffers must be ArrayBuffers and lengths Int32Arrays of a batch");
      return NULL;
    }
    void *tdata = NULL;
    size_t tlen = 0;
    if (napi_get_typedarray_info(env, tv, &type, &tlen, &tdata, &lab, &offset) != napi_ok ||
        type != napi_float64_array || tlen < (size_t)batch) {
      napi_throw_type_error(env, NULL, "times must be Float64Arrays of a batch");
      return NULL;
    }
    CHECK(env, napi_get_arraybuffer_info(env, ab, &data, &bytes));
    if (bytes < (size_t)batch * datagram) {
      napi_throw_range_error(env, NULL, "a buffer must hold batch × datagram bytes");
      return NULL;
    }
    CHECK(env, napi_create_reference(env, ab, 1, &r->refs[3 * s]));
    CHECK(env, napi_create_reference(env, lv, 1, &r->refs[3 * s + 1]));
    CHECK(env, napi_create_reference(env, tv, 1, &r->refs[3 * s + 2]));
    r->data[s] = data;
    r->lengths[s] = ldata;
    r->times[s] = tdata;
    for (int i = 0; i < batch; i++) {
      size_t k = (size_t)s * batch + i;
      r->iovs[k].iov_base = (uint8_t *)data + (size_t)i * datagram;
      r->iovs[k].iov_len = (size_t)datagram;
      r->msgs[k].msg_hdr.msg_iov = &r->iovs[k];
      r->msgs[k].msg_hdr.msg_iovlen = 1;
      r->msgs[k].msg_hdr.msg_control = r->control + k * CONTROL_BYTES;
    }
  }
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    napi_throw_type_error(env, NULL, "host must be an IPv4 address");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  if (reuse && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
                setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)) {
    int e = errno;
    close(fd);
    return throw_errno(env, "setsockopt(SO_REUSEPORT)", e);
  }
  // Receive times from the kernel, per datagram.
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  // The kernel caps this at net.core.rmem_max; what it granted is read back below.
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind", e);
  }
  socklen_t alen = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &alen);
  int granted = 0;
  socklen_t glen = sizeof granted;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &glen);
  napi_value name;
  napi_create_string_utf8(env, "tmo-batch-udp", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, args[1], NULL, name, 0, 1, NULL, NULL, r, call_js, &r->tsfn) !=
      napi_ok) {
    close(fd);
    napi_throw_error(env, NULL, "batch-udp: napi_create_threadsafe_function failed");
    return NULL;
  }
  r->fd = fd;
  if (pthread_create(&r->thread, NULL, receive_loop, r) != 0) {
    int e = errno;
    close(fd);
    r->fd = -1;
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    return throw_errno(env, "pthread_create", e);
  }
  r->started = 1;
  napi_value port_v, granted_v;
  CHECK(env, napi_create_object(env, &result));
  CHECK(env, napi_create_int32(env, ntohs(addr.sin_port), &port_v));
  CHECK(env, napi_create_int32(env, granted, &granted_v));
  CHECK(env, napi_set_named_property(env, result, "handle", handle));
  CHECK(env, napi_set_named_property(env, result, "port", port_v));
  CHECK(env, napi_set_named_property(env, result, "recvBufferBytes", granted_v));
  return result;
}

static receiver_t *receiver_of(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  void *r = NULL;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, arg, &r) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a receiver handle");
    return NULL;
  }
  return r;
}

// close(handle): stops the thread and closes the socket; batches already queued still arrive.
static napi_value close_receiver(napi_env env, napi_callback_info info) {
  receiver_t *r = receiver_of(env, info);
  if (r != NULL) stop(r);
  return NULL;
}

// error(handle): the errno that stopped the thread, or 0.
static napi_value receiver_error(napi_env env, napi_callback_info info) {
  receiver_t *r = receiver_of(env, info);
  if (r == NULL) return NULL;
  pthread_mutex_lock(&r->lock);
  int e = r->error;
  pthread_mutex_unlock(&r->lock);
  napi_value v;
  napi_create_int32(env, e, &v);
  return v;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"open", NULL, open_receiver, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_receiver, NULL, NULL, NULL, napi_default, NULL},
      {"error", NULL, receiver_error, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
