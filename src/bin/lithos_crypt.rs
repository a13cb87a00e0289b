//! `lithos_crypt`: encrypts secrets for `secret-environ` and inspects encrypted values.

use std::process::ExitCode;

fn main() -> ExitCode {
    lithos::tools::crypt::main_from_args()
}
