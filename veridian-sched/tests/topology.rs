//! Topology construction, validation errors, and the steal order.

use veridian_sched::topology::{DEFAULT_REMOTE_DISTANCE, LOCAL_DISTANCE};
use veridian_sched::{
    CpuAffinity, CpuSet, DistanceTable, MAX_CPUS, MAX_NODES, Symmetry, Topology, TopologyBuilder,
    TopologyError,
};

fn order(t: &Topology, cpu: usize) -> Vec<usize> {
    t.nearby_cpus(cpu).unwrap().iter().collect()
}

/// Three nodes in a line: 0 -- 1 -- 2, node 0 has SMT pairs.
fn line_of_three() -> Topology {
    let mut b = TopologyBuilder::new(3);
    for cpu in 0..4 {
        b.cpu(cpu, 0).core(cpu, (cpu / 2) as u32);
    }
    for cpu in 4..6 {
        b.cpu(cpu, 1);
    }
    for cpu in 6..8 {
        b.cpu(cpu, 2);
    }
    let d = [[10, 20, 30], [20, 10, 20], [30, 20, 10]];
    for (i, row) in d.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            b.distance(i, j, x);
        }
    }
    b.build().unwrap()
}

#[test]
fn steal_order_siblings_node_then_distance() {
    let t = line_of_three();
    assert_eq!(order(&t, 0), [1, 2, 3, 4, 5, 6, 7]);
    // Rotation within groups: CPU 3's sibling is 2, then own node starting above 3.
    assert_eq!(order(&t, 3), [2, 0, 1, 4, 5, 6, 7]);
    // Node 1 is equally far from 0 and 2: ties by node id.
    assert_eq!(order(&t, 5), [4, 0, 1, 2, 3, 6, 7]);
    // Node 2: node 1 (20) before node 0 (30).
    assert_eq!(order(&t, 6), [7, 4, 5, 0, 1, 2, 3]);
    assert_eq!(t.smt_siblings(1).unwrap(), CpuSet::single(0).unwrap());
    assert!(t.smt_siblings(4).unwrap().is_empty());
    assert!(t.nearby_cpus(100).is_err());
}

#[test]
fn steal_order_is_a_permutation_of_the_other_cpus() {
    let t = line_of_three();
    for cpu in t.cpus().iter() {
        let mut o = order(&t, cpu);
        assert!(!o.contains(&cpu));
        o.sort_unstable();
        let mut expected: Vec<usize> = t.cpus().iter().filter(|&c| c != cpu).collect();
        expected.sort_unstable();
        assert_eq!(o, expected);
    }
}

#[test]
fn accessors() {
    let t = line_of_three();
    assert_eq!(t.cpu_count(), 8);
    assert_eq!(t.node_count(), 3);
    assert_eq!(t.node_of(5), Some(1));
    assert_eq!(t.node_of(8), None);
    assert_eq!(t.node_cpus(2), CpuSet::from_cpus([6, 7]).unwrap());
    assert!(t.node_cpus(9).is_empty());
    assert_eq!(t.distance(0, 2), Some(30));
    assert_eq!(t.distance(2, 2), Some(LOCAL_DISTANCE));
    assert_eq!(t.distance(0, 3), None);
    let u = Topology::uniform(4).unwrap();
    assert_eq!(u.node_count(), 1);
    assert_eq!(order(&u, 2), [3, 0, 1]);
    assert!(format!("{t:?}").contains("{0-3}"));
}

#[test]
fn from_firmware_with_slit() {
    let cpus: Vec<CpuAffinity> = (0..4)
        .map(|cpu| CpuAffinity {
            cpu,
            node: (cpu / 2) as u32,
            core: None,
        })
        .collect();
    let slit = [10, 21, 21, 10];
    let t = Topology::from_firmware(
        &cpus,
        Some(DistanceTable {
            localities: 2,
            entries: &slit,
        }),
        Symmetry::RequireSymmetric,
    )
    .unwrap();
    assert_eq!(t.distance(0, 1), Some(21));
    assert_eq!(order(&t, 0), [1, 2, 3]);
}

#[test]
fn from_firmware_without_slit_and_memory_only_node() {
    let cpus = [
        CpuAffinity {
            cpu: 0,
            node: 0,
            core: Some(0),
        },
        CpuAffinity {
            cpu: 1,
            node: 0,
            core: Some(0),
        },
        CpuAffinity {
            cpu: 2,
            node: 2,
            core: None,
        },
    ];
    let t = Topology::from_firmware(&cpus, None, Symmetry::RequireSymmetric).unwrap();
    assert_eq!(t.node_count(), 3);
    assert!(t.node_cpus(1).is_empty()); // memory-only (or CPU-less) node
    assert_eq!(t.distance(0, 2), Some(DEFAULT_REMOTE_DISTANCE));
    assert_eq!(order(&t, 0), [1, 2]);
    // A duplicate identical entry is accepted.
    let dup = [cpus[0], cpus[0]];
    assert!(Topology::from_firmware(&dup, None, Symmetry::RequireSymmetric).is_ok());
}

#[test]
fn validation_errors() {
    let a = |cpu, node| CpuAffinity {
        cpu,
        node,
        core: None,
    };
    let table = |entries: &'static [u8], localities| {
        Some(DistanceTable {
            localities,
            entries,
        })
    };
    let sym = Symmetry::RequireSymmetric;

    assert_eq!(
        Topology::from_firmware(&[a(0, 0), a(0, 1)], None, sym).unwrap_err(),
        TopologyError::CpuInTwoNodes {
            cpu: 0,
            first: 0,
            second: 1
        }
    );
    assert_eq!(
        Topology::from_firmware(&[a(0, 0), a(1, 2)], table(&[10, 20, 20, 10], 2), sym).unwrap_err(),
        TopologyError::UnknownNode { node: 2, nodes: 2 }
    );
    assert_eq!(
        Topology::from_firmware(&[a(0, 0)], table(&[10, 20, 20], 2), sym).unwrap_err(),
        TopologyError::TableSize {
            expected: 4,
            got: 3
        }
    );
    assert_eq!(
        Topology::from_firmware(&[a(0, 0)], table(&[11, 20, 20, 10], 2), sym).unwrap_err(),
        TopologyError::LocalDistanceNot10 {
            node: 0,
            distance: 11
        }
    );
    assert_eq!(
        Topology::from_firmware(&[a(0, 0)], table(&[10, 5, 5, 10], 2), sym).unwrap_err(),
        TopologyError::InvalidDistance {
            from: 0,
            to: 1,
            distance: 5
        }
    );
    assert_eq!(
        Topology::from_firmware(&[a(0, 0)], table(&[10, 20, 30, 10], 2), sym).unwrap_err(),
        TopologyError::Asymmetric {
            a: 0,
            b: 1,
            ab: 20,
            ba: 30
        }
    );
    // ... unless asymmetry is allowed; then the thief's row decides.
    let t = Topology::from_firmware(
        &[a(0, 0), a(1, 1)],
        table(&[10, 20, 30, 10], 2),
        Symmetry::AllowAsymmetric,
    )
    .unwrap();
    assert_eq!((t.distance(0, 1), t.distance(1, 0)), (Some(20), Some(30)));
    assert_eq!(
        Topology::from_firmware(&[a(MAX_CPUS, 0)], None, sym).unwrap_err(),
        TopologyError::CpuOutOfRange { cpu: MAX_CPUS }
    );
    assert_eq!(
        Topology::from_firmware(&[a(0, MAX_NODES as u32)], None, sym).unwrap_err(),
        TopologyError::NodeOutOfRange { node: MAX_NODES }
    );
    assert_eq!(
        Topology::from_firmware(&[], None, sym).unwrap_err(),
        TopologyError::NoCpus
    );

    // Builder: a missing distance, an unknown node, too many nodes.
    let mut b = TopologyBuilder::new(2);
    b.cpu(0, 0).cpu(1, 1).distance(0, 1, 20);
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::MissingDistance { from: 1, to: 0 }
    );
    b.distance(1, 0, 20);
    assert!(b.build().is_ok());
    b.cpu(2, 5);
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::UnknownNode { node: 5, nodes: 2 }
    );
    assert_eq!(
        TopologyBuilder::new(MAX_NODES + 1).build().unwrap_err(),
        TopologyError::NodeOutOfRange { node: MAX_NODES }
    );
    let mut b = TopologyBuilder::new(1);
    b.cpu(0, 0).distance(0, 0, 12);
    assert_eq!(
        b.build().unwrap_err(),
        TopologyError::LocalDistanceNot10 {
            node: 0,
            distance: 12
        }
    );
    // Every error has a message.
    assert!(
        TopologyError::MissingDistance { from: 1, to: 0 }
            .to_string()
            .contains("node 1")
    );
}

#[test]
fn full_size_topology() {
    // MAX_CPUS CPUs on MAX_NODES nodes, ring distances: no allocation needed, order complete.
    let mut b = TopologyBuilder::new(MAX_NODES);
    for cpu in 0..MAX_CPUS {
        b.cpu(cpu, cpu % MAX_NODES);
    }
    for i in 0..MAX_NODES {
        for j in 0..MAX_NODES {
            if i != j {
                let hops = (i as isize - j as isize)
                    .unsigned_abs()
                    .min(MAX_NODES - (i as isize - j as isize).unsigned_abs());
                b.distance(i, j, 10 + hops as u8);
            }
        }
    }
    let t = b.build().unwrap();
    let o = order(&t, 0);
    assert_eq!(o.len(), MAX_CPUS - 1);
    // First the three other CPUs of node 0, then nodes 1 and 63 (distance 11).
    assert_eq!(&o[..3], [64, 128, 192]);
    let next: Vec<usize> = o[3..11].iter().map(|&c| t.node_of(c).unwrap()).collect();
    assert_eq!(next, [1, 1, 1, 1, 63, 63, 63, 63]);
}

/// Everything a `Topology` answers, for comparing two of them.
fn same(a: &Topology, b: &Topology) {
    assert_eq!(a.cpus(), b.cpus());
    assert_eq!(a.node_count(), b.node_count());
    for node in 0..MAX_NODES {
        assert_eq!(a.node_cpus(node), b.node_cpus(node));
        for to in 0..MAX_NODES {
            assert_eq!(a.distance(node, to), b.distance(node, to));
        }
    }
    for cpu in 0..MAX_CPUS {
        assert_eq!(a.node_of(cpu), b.node_of(cpu));
        assert_eq!(a.smt_siblings(cpu), b.smt_siblings(cpu));
        assert_eq!(
            a.nearby_cpus(cpu).map(|l| l.as_slice().to_vec()),
            b.nearby_cpus(cpu).map(|l| l.as_slice().to_vec())
        );
    }
}

#[test]
fn in_place_and_boxed_constructors_equal_the_by_value_ones() {
    use core::mem::MaybeUninit;

    let by_value = line_of_three();
    // The same builder calls on a builder in place and on a boxed one.
    let fill = |b: &mut TopologyBuilder| {
        for cpu in 0..4 {
            b.cpu(cpu, 0).core(cpu, (cpu / 2) as u32);
        }
        b.cpu(4, 1).cpu(5, 1).cpu(6, 2).cpu(7, 2);
        let d = [[10, 20, 30], [20, 10, 20], [30, 20, 10]];
        for (i, row) in d.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                b.distance(i, j, x);
            }
        }
    };
    let mut builder = MaybeUninit::uninit();
    let b = TopologyBuilder::init_in_place(&mut builder, 3);
    fill(b);
    let mut slot = MaybeUninit::uninit();
    same(b.build_in_place(&mut slot).unwrap(), &by_value);
    same(&b.build_boxed().unwrap(), &by_value);
    let mut boxed = TopologyBuilder::boxed(3);
    fill(&mut boxed);
    same(&boxed.build_boxed().unwrap(), &by_value);

    for cpus in [1, 5, MAX_CPUS] {
        let by_value = Topology::uniform(cpus).unwrap();
        let mut slot = MaybeUninit::uninit();
        same(
            Topology::uniform_in_place(cpus, &mut slot).unwrap(),
            &by_value,
        );
        same(&Topology::uniform_boxed(cpus).unwrap(), &by_value);
        // `uniform_in_place` fills the topology itself (no builder): same as a builder's.
        let mut b = TopologyBuilder::new(1);
        for cpu in 0..cpus {
            b.cpu(cpu, 0);
        }
        same(&b.build().unwrap(), &by_value);
    }
    for bad in [0, MAX_CPUS + 1] {
        let mut slot = MaybeUninit::uninit();
        let by_builder = {
            let mut b = TopologyBuilder::new(1);
            for cpu in 0..bad {
                b.cpu(cpu, 0);
            }
            b.build().unwrap_err()
        };
        assert_eq!(Topology::uniform(bad).unwrap_err(), by_builder);
        assert_eq!(
            Topology::uniform_in_place(bad, &mut slot).unwrap_err(),
            by_builder
        );
        assert_eq!(Topology::uniform_boxed(bad).unwrap_err(), by_builder);
    }

    let cpus: Vec<CpuAffinity> = (0..6)
        .map(|cpu| CpuAffinity {
            cpu,
            node: (cpu / 2) as u32,
            core: Some(cpu as u32 / 2),
        })
        .collect();
    let slit = [10, 21, 31, 21, 10, 21, 31, 21, 10];
    let table = || {
        Some(DistanceTable {
            localities: 3,
            entries: &slit,
        })
    };
    let by_value = Topology::from_firmware(&cpus, table(), Symmetry::RequireSymmetric).unwrap();
    let mut scratch = MaybeUninit::uninit();
    let mut slot = MaybeUninit::uninit();
    same(
        Topology::from_firmware_in_place(
            &cpus,
            table(),
            Symmetry::RequireSymmetric,
            &mut scratch,
            &mut slot,
        )
        .unwrap(),
        &by_value,
    );
    same(
        &Topology::from_firmware_boxed(&cpus, table(), Symmetry::RequireSymmetric).unwrap(),
        &by_value,
    );
}

#[test]
fn a_failed_in_place_build_leaves_the_slot_as_it_was() {
    use core::mem::MaybeUninit;

    let mut slot = MaybeUninit::new(line_of_three());
    let mut b = TopologyBuilder::new(2);
    b.cpu(0, 0).distance(0, 1, 20).distance(1, 0, 30);
    assert!(matches!(
        b.build_in_place(&mut slot),
        Err(TopologyError::Asymmetric { .. })
    ));
    assert!(matches!(
        Topology::uniform_in_place(0, &mut slot),
        Err(TopologyError::NoCpus)
    ));
    // SAFETY: initialised by `MaybeUninit::new`, and a failed build writes nothing.
    same(unsafe { slot.assume_init_ref() }, &line_of_three());
}
