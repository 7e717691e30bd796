//! The initiator's checks on what a target sends for one task.

use iscsi_proto::dataout::WriteParams;
use iscsi_proto::pdu::{DataIn, R2t, ScsiResponse};
use iscsi_proto::task::{Completion, Task, TaskError};

fn params() -> WriteParams {
    WriteParams {
        immediate_data: true,
        initial_r2t: true,
        first_burst_length: 65536,
        max_burst_length: 262144,
        max_xmit_data_segment_length: 8192,
        max_outstanding_r2t: 1,
        data_sequence_in_order: true,
    }
}

fn data_in(offset: u32, data_sn: u32) -> DataIn {
    DataIn {
        offset,
        data_sn,
        ..DataIn::default()
    }
}

#[test]
fn read_in_order_then_status_in_last_data_in() {
    let mut t = Task::new(16384, 0, &params());
    assert_eq!(t.on_data_in(&data_in(0, 0), 8192).unwrap().offset, 0);
    let last = DataIn {
        final_: true,
        status_present: true,
        ..data_in(8192, 1)
    };
    let step = t.on_data_in(&last, 8192).unwrap();
    assert_eq!(step.offset, 8192);
    assert_eq!(
        step.completion,
        Some(Completion {
            response: 0,
            status: 0,
            residual: 0
        })
    );
    assert!(t.is_done());
    assert_eq!(t.on_data_in(&data_in(0, 2), 0), Err(TaskError::Completed));
}

#[test]
fn short_read_reports_the_residual() {
    let mut t = Task::new(4096, 0, &params());
    let last = DataIn {
        final_: true,
        status_present: true,
        underflow: true,
        residual: 3584,
        ..data_in(0, 0)
    };
    assert_eq!(
        t.on_data_in(&last, 512)
            .unwrap()
            .completion
            .unwrap()
            .residual,
        3584
    );
}

#[test]
fn hostile_data_in_is_refused() {
    let mut t = Task::new(4096, 0, &params());
    // Past the buffer, out of order, wrapping, wrong DataSN, status without F.
    assert_eq!(
        t.on_data_in(&data_in(0, 0), 4097),
        Err(TaskError::BadOffset)
    );
    assert_eq!(
        t.on_data_in(&data_in(512, 0), 512),
        Err(TaskError::BadOffset)
    );
    assert_eq!(
        t.on_data_in(&data_in(u32::MAX, 0), 2),
        Err(TaskError::BadOffset)
    );
    assert_eq!(t.on_data_in(&data_in(0, 1), 512), Err(TaskError::BadDataSn));
    let bad = DataIn {
        status_present: true,
        ..data_in(0, 0)
    };
    assert_eq!(t.on_data_in(&bad, 512), Err(TaskError::BadFinal));
    // The target claims it sent everything but only 512 bytes came.
    let lying = DataIn {
        final_: true,
        status_present: true,
        ..data_in(0, 0)
    };
    assert_eq!(t.on_data_in(&lying, 512), Err(TaskError::DataMissing));
    let residual = DataIn {
        final_: true,
        status_present: true,
        underflow: true,
        residual: 4097,
        ..data_in(0, 0)
    };
    assert_eq!(t.on_data_in(&residual, 0), Err(TaskError::BadResidual));
    // Data-In for a write.
    let mut w = Task::new(0, 4096, &params());
    assert_eq!(w.on_data_in(&data_in(0, 0), 512), Err(TaskError::NotARead));
}

#[test]
fn response_with_sense_and_missing_data() {
    let mut t = Task::new(0, 0, &params());
    let rsp = ScsiResponse {
        status: 2,
        ..ScsiResponse::default()
    };
    let data = [0, 3, 0x70, 0, 5, 0xee];
    let step = t.on_response(&rsp, &data).unwrap();
    assert_eq!(step.sense, &[0x70, 0, 5]);
    assert_eq!(step.completion.status, 2);
    assert_eq!(t.on_response(&rsp, &data), Err(TaskError::Completed));

    let mut t = Task::new(0, 0, &params());
    assert_eq!(t.on_response(&rsp, &[0, 9, 1]), Err(TaskError::BadSense));
    let mut t = Task::new(0, 0, &params());
    assert_eq!(t.on_response(&rsp, &[0]), Err(TaskError::BadSense));

    // A good read status after only half the data arrived.
    let mut t = Task::new(8192, 0, &params());
    t.on_data_in(&data_in(0, 0), 4096).unwrap();
    assert_eq!(
        t.on_response(&ScsiResponse::default(), &[]),
        Err(TaskError::DataMissing)
    );

    // A target failure completes without status.
    let mut t = Task::new(8192, 0, &params());
    let failed = ScsiResponse {
        response: 1,
        ..ScsiResponse::default()
    };
    assert!(!t
        .on_response(&failed, &[])
        .unwrap()
        .completion
        .completed_at_target());
}

/// A read ended with CHECK CONDITION after part of its data, or none, and no residual (valid
/// only with U or O): what did not arrive is in the residual, so that the midlayer, which
/// takes it off what the sense says was good (sd: RECOVERED ERROR, MEDIUM ERROR's information
/// field), never counts pages we did not fill as read.
#[test]
fn check_condition_read_counts_only_what_arrived() {
    let sense = [0, 3, 0x70, 0, 1];
    let check = ScsiResponse {
        status: 2,
        ..ScsiResponse::default()
    };
    // No data at all.
    let mut t = Task::new(8192, 0, &params());
    let step = t.on_response(&check, &sense).unwrap();
    assert_eq!((step.completion.status, step.completion.residual), (2, 8192));
    // Half of it.
    let mut t = Task::new(8192, 0, &params());
    t.on_data_in(&data_in(0, 0), 4096).unwrap();
    assert_eq!(t.on_response(&check, &sense).unwrap().completion.residual, 4096);
    // All of it: nothing to add.
    let mut t = Task::new(8192, 0, &params());
    t.on_data_in(&data_in(0, 0), 8192).unwrap();
    assert_eq!(t.on_response(&check, &sense).unwrap().completion.residual, 0);
    // A residual larger than what is missing stands.
    let mut t = Task::new(8192, 0, &params());
    t.on_data_in(&data_in(0, 0), 4096).unwrap();
    let under = ScsiResponse {
        underflow: true,
        residual: 6144,
        ..check
    };
    assert_eq!(t.on_response(&under, &sense).unwrap().completion.residual, 6144);
    // A write's residual is the target's alone.
    let mut w = Task::new(0, 8192, &params());
    assert_eq!(w.on_response(&check, &sense).unwrap().completion.residual, 0);
}

#[test]
fn r2t_for_a_write_only() {
    let mut w = Task::new(0, 131072, &params());
    let plan = *w.write_plan().unwrap();
    assert_eq!(plan.immediate_len(), 8192);
    let r2t = R2t {
        offset: 8192,
        desired_len: 65536,
        ttt: 7,
        ..R2t::default()
    };
    let burst: Vec<_> = w.on_r2t(&r2t).unwrap().collect();
    assert_eq!(burst.len(), 8);
    assert!(burst.last().unwrap().final_);
    assert_eq!(
        w.on_r2t(&R2t { r2t_sn: 1, ..r2t }),
        Err(TaskError::R2t(
            iscsi_proto::dataout::DataOutError::TooManyR2ts
        ))
    );
    w.burst_done();
    let mut r = Task::new(4096, 0, &params());
    assert_eq!(r.on_r2t(&r2t), Err(TaskError::NotAWrite));
}
