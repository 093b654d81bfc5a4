;; Grows its memory 1 MiB at a time until growth is refused, then aborts the way a Rust
;; program does when an allocation fails: stopped by the memory cap.
(module
  (memory 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
