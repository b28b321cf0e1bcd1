//! Integration tests of xregion-report: every renderer on a realistic sample report, the committed JSON Schema
//! against real output, and the HTML page in headless Chromium.

mod chromium;
mod console;
mod html;
mod json;
mod junit;
mod sample;
mod schema;
