pub mod session {}
