/**
 * TCP settings every Offsite connection uses (data sessions and the control channel).
 *
 * The subtle point: a peer whose network vanishes — a pod deleted mid-job, its network
 * namespace torn down before its FIN left — never closes its end. Without keepalive the
 * other side would wait for its idle timeout (minutes) holding the source's session,
 * and every retry meanwhile is refused as busy. With keepalive after this much silence,
 * and libuv's probes every second, ten at most (Linux), a vanished peer is noticed in
 * about 25 s.
 */
export const TCP_KEEPALIVE_MS = 15_000;
