//! `lithos_knot`: pid 1 of each container. See [`lithos::exec::knot`] for what it does
//! and [`lithos::exec::knot::exit_codes`] for its exit codes.

fn main() {
    std::process::exit(lithos::exec::knot::main());
}
