;; Loops forever, calling a function each time round: stopped by the fuel budget or the
;; wall-clock cap.
(module
  (global $n (mut i64) (i64.const 0))
  (func $tick
    (global.set $n (i64.add (global.get $n) (i64.const 1))))
  (func (export "_start")
    (loop $forever
      (call $tick)
      (br $forever))))
