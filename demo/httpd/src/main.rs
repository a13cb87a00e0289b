//! A tiny HTTP server for the lithos-rs demo.
//!
//! It serves on a listening socket it inherits (fd 3 by default, as systemd socket
//! activation and lithos `tcp-ports` hand it over), so it never binds a port itself. Every
//! request gets one line naming the instance (`LITHOS_NAME`) and the server's pid. It uses
//! only `std`, so it links statically and runs in a busybox image.

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::process;

fn main() {
    let fd: i32 = match env::var("LISTEN_FD").as_deref().unwrap_or("3").parse() {
        Ok(fd) => fd,
        Err(_) => {
            eprintln!("httpd: LISTEN_FD is not a file descriptor number");
            process::exit(2);
        }
    };
    // SAFETY: the supervisor hands over a listening TCP socket at this fd and nothing else
    // in this process owns it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    if let Err(error) = listener.local_addr() {
        eprintln!("httpd: fd {fd} is not a listening socket: {error}");
        process::exit(2);
    }
    let name = env::var("LITHOS_NAME").unwrap_or_else(|_| "unknown".into());
    eprintln!("httpd: {name} serving on fd {fd}, pid {}", process::id());
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => serve(stream, &name),
            Err(error) => eprintln!("httpd: accept failed: {error}"),
        }
    }
}

/// Reads the request head and responds with one line of text.
fn serve(stream: TcpStream, name: &str) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        if line == "\r\n" || line == "\n" {
            break;
        }
        line.clear();
    }
    let body = format!("hello from {name}, pid {}\n", process::id());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(response.as_bytes());
}
