//! The local executor: `n` independent tasks on at most `parallel` threads of this process,
//! each result handed to one collector thread in completion order (so a caller that writes a
//! shared file, such as a grid's results.csv, has a single writer).
use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Runs `task(i)` for i in 0..n on `parallel` worker threads (taking the next index as each
/// finishes) and calls `done(i, result)` on the calling thread as results arrive. A task's
/// error is its result, not the run's; an error from `done` stops the collection and is
/// returned once the running tasks end. Errors: `parallel` is 0.
pub fn run_tasks<T: Send>(
    n: usize,
    parallel: usize,
    task: impl Fn(usize) -> Result<T> + Sync,
    mut done: impl FnMut(usize, Result<T>) -> Result<()>,
) -> Result<()> {
    if parallel == 0 {
        anyhow::bail!("at least one task at a time is needed (parallel = 0)");
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<T>)>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..parallel.min(n) {
            let (tx, next, task) = (tx.clone(), &next, &task);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                if tx.send((i, task(i))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            if let Err(e) = done(i, r) {
                // Workers stop taking tasks once the channel is gone.
                next.store(n, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_reaches_the_collector() {
        let mut seen = vec![0; 50];
        run_tasks(
            50,
            3,
            |i| Ok(i * i),
            |i, r| {
                assert_eq!(r.unwrap(), i * i);
                seen[i] += 1;
                Ok(())
            },
        )
        .unwrap();
        assert!(seen.iter().all(|&c| c == 1));
        assert!(run_tasks(1, 0, |_| Ok(()), |_, _| Ok(())).is_err());
    }

    #[test]
    fn a_failing_task_is_a_result_and_a_failing_collector_stops_the_run() {
        let mut errors = 0;
        run_tasks(
            4,
            2,
            |i| {
                if i == 2 {
                    anyhow::bail!("task {i}")
                } else {
                    Ok(i)
                }
            },
            |_, r| {
                errors += r.is_err() as usize;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(errors, 1);
        let e = run_tasks(100, 1, Ok, |i, _| {
            if i == 3 {
                anyhow::bail!("collector gave up at {i}")
            }
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("gave up at 3"));
    }
}
