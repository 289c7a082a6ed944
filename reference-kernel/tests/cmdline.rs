//! Kernel command-line lookup tests.

use reference_kernel::CmdLine;

#[test]
fn get_values() {
    let c = CmdLine::new("console=ttyS0 root=/dev/vda1  ro quiet init=/sbin/init");
    assert_eq!(c.get("console"), Some("ttyS0"));
    assert_eq!(c.get("root"), Some("/dev/vda1"));
    assert_eq!(c.get("init"), Some("/sbin/init"));
    assert_eq!(c.get("ro"), None, "bare words have no value");
    assert_eq!(c.get("missing"), None);
    assert_eq!(c.get("consol"), None, "no prefix matching");
    assert_eq!(c.get(""), None);
    assert_eq!(
        c.as_str(),
        "console=ttyS0 root=/dev/vda1  ro quiet init=/sbin/init"
    );
}

#[test]
fn last_occurrence_wins() {
    let c = CmdLine::new("console=tty0 console=ttyS0,115200 log=info log=");
    assert_eq!(c.get("console"), Some("ttyS0,115200"));
    assert_eq!(c.get("log"), Some(""));
    // A later bare word does not hide an earlier value.
    assert_eq!(CmdLine::new("x=1 x").get("x"), Some("1"));
}

#[test]
fn values_may_contain_equals() {
    let c = CmdLine::new("opt=a=b=c");
    assert_eq!(c.get("opt"), Some("a=b=c"));
    assert_eq!(c.get("opt=a"), None);
}

#[test]
fn ascii_whitespace_separates() {
    let c = CmdLine::new("\ta=1\n b=2\r\x0cc=3  ");
    assert_eq!(c.get("a"), Some("1"));
    assert_eq!(c.get("b"), Some("2"));
    assert_eq!(c.get("c"), Some("3"));
    assert_eq!(c.iter().count(), 3);
    // Non-ASCII whitespace is part of a word.
    let c = CmdLine::new("a=1\u{a0}b=2");
    assert_eq!(c.get("a"), Some("1\u{a0}b=2"));
}

#[test]
fn flags() {
    let c = CmdLine::new("quiet debug=1 trace=true smp=on acpi=off nokaslr=0 verbose=ON x=yes");
    assert!(c.flag("quiet"));
    assert!(c.flag("debug"));
    assert!(c.flag("trace"));
    assert!(c.flag("smp"));
    assert!(c.flag("verbose"));
    assert!(!c.flag("acpi"));
    assert!(!c.flag("nokaslr"));
    assert!(!c.flag("x"));
    assert!(!c.flag("missing"));
    assert!(!c.flag("qui"));
    // Last occurrence decides.
    assert!(!CmdLine::new("quiet quiet=0").flag("quiet"));
    assert!(CmdLine::new("quiet=0 quiet").flag("quiet"));
    assert!(CmdLine::new("quiet=off quiet=1").flag("quiet"));
}

#[test]
fn iter_words() {
    let c = CmdLine::new(" a=1 b c= =d ");
    let words: Vec<_> = c.iter().collect();
    assert_eq!(
        words,
        vec![
            ("a", Some("1")),
            ("b", None),
            ("c", Some("")),
            ("", Some("d"))
        ]
    );
    assert_eq!(CmdLine::new("").iter().count(), 0);
    assert_eq!(CmdLine::new("   ").iter().count(), 0);
}

#[test]
fn borrowed_results_outlive_wrapper() {
    let line = String::from("k=v");
    let v = {
        let c = CmdLine::new(&line);
        c.get("k")
    };
    assert_eq!(v, Some("v"));
}
