//! The `supermin` binary (and, statically linked, the mini initrd's `/init`).

fn main() {
    supermin::main();
}
