;; FastCDC's cut-point search (agent/chunking/fastCdc.ts has the reference in TypeScript and
;; PROTOCOL.md the parameters), in WebAssembly: its native 64-bit integers run the Gear hash
;; several times faster than two 32-bit halves in JavaScript. Both must cut identically;
;; fastCdc.test.ts checks them against each other and against the published vectors.
;;
;; Memory: the Gear table (256 little-endian u64) at 0..2047, the caller's data after it.
;; Compiled to fastCdc.wasm by `npm run wasm:generate` (committed; a test proves it current).
(module
  (memory (export "memory") 18)

  ;; The length of the chunk starting at address $start, looking at no more than
  ;; $available bytes (the same contract as nextCut in fastCdc.ts).
  (func (export "nextCut") (param $start i32) (param $available i32) (result i32)
    (local $n i32)
    (local $normal i32)
    (local $p i32)
    (local $normalEnd i32)
    (local $end i32)
    (local $fp i64)
    (local.set $n (local.get $available))
    (if (i32.le_u (local.get $n) (i32.const 2048)) (then (return (local.get $n))))
    (local.set $normal (i32.const 8192))
    (if (i32.ge_u (local.get $n) (i32.const 65536))
      (then (local.set $n (i32.const 65536)))
      (else
        (if (i32.le_u (local.get $n) (local.get $normal))
          (then (local.set $normal (local.get $n))))))
    (local.set $p (i32.add (local.get $start) (i32.const 2048)))
    (local.set $normalEnd (i32.add (local.get $start) (local.get $normal)))
    (local.set $end (i32.add (local.get $start) (local.get $n)))

    ;; Before the normal size: the harder mask (MaskS).
    (block $small
      (loop $next
        (br_if $small (i32.ge_u (local.get $p) (local.get $normalEnd)))
        (local.set $fp
          (i64.add
            (i64.shl (local.get $fp) (i64.const 1))
            (i64.load (i32.shl (i32.load8_u (local.get $p)) (i32.const 3)))))
        (if (i64.eqz (i64.and (local.get $fp) (i64.const 0x0003590703530000)))
          (then (return (i32.sub (local.get $p) (local.get $start)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))

    ;; After it: the easier mask (MaskL).
    (block $large
      (loop $next
        (br_if $large (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $fp
          (i64.add
            (i64.shl (local.get $fp) (i64.const 1))
            (i64.load (i32.shl (i32.load8_u (local.get $p)) (i32.const 3)))))
        (if (i64.eqz (i64.and (local.get $fp) (i64.const 0x0000d90003530000)))
          (then (return (i32.sub (local.get $p) (local.get $start)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (i32.sub (local.get $p) (local.get $start))))
