;; Does a little work, then divides by zero: a trap, reported with its code.
(module
  (func $step (param $i i32) (result i32)
    (i32.add (local.get $i) (i32.const 1)))
  (func (export "_start")
    (local $i i32)
    (loop $work
      (local.set $i (call $step (local.get $i)))
      (br_if $work (i32.lt_u (local.get $i) (i32.const 1000))))
    (drop (i32.div_s (i32.const 1) (i32.sub (local.get $i) (i32.const 1000))))))
