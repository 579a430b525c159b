//! How fast a traffic step reaches KEDA through `StreamIsActive`. Alone in its test
//! binary so no other test's processes compete for the CPU while it measures.

use std::time::Duration;

use spillway_tests::demo::{QUIET_PROFILE, pin, start, wait_for_decision, workload};

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_active_pushes_the_transition_within_one_scrape_interval() {
    const INTERVAL: Duration = Duration::from_millis(500);
    const TRIALS: usize = 5;
    let mut fixture = start(BIN, QUIET_PROFILE, "500ms").await;
    let reference = workload(&fixture, "checkout");
    wait_for_decision(&fixture.client, &reference).await;

    let mut stream = fixture
        .client
        .stream_is_active(reference.clone())
        .await
        .expect("stream opens")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message within 10 s")
            .expect("stream message")
            .expect("stream open")
            .result
    };
    assert!(
        !next().await,
        "the current state is sent at once: a quiet app is inactive"
    );

    let mut latencies = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let started = tokio::time::Instant::now();
        pin(&fixture, "checkout", 300.0).await;
        assert!(next().await, "trial {trial}: the push says active");
        latencies.push(started.elapsed());
        // Traffic stops; after the activation window the stream pushes the way back.
        pin(&fixture, "checkout", 0.0).await;
        assert!(
            !next().await,
            "trial {trial}: inactive again after traffic stops"
        );
    }
    latencies.sort();
    println!(
        "StreamIsActive push latency after a traffic step ({TRIALS} trials, scrape interval \
         {INTERVAL:?}): min {:?}, median {:?}, max {:?}",
        latencies[0],
        latencies[TRIALS / 2],
        latencies[TRIALS - 1]
    );
    let worst = latencies[TRIALS - 1];
    assert!(
        worst <= INTERVAL + Duration::from_millis(100),
        "push took {worst:?}; the bound is one scrape interval ({INTERVAL:?}) + 100 ms"
    );

    // Only transitions are pushed: steady traffic sends nothing more.
    pin(&fixture, "checkout", 300.0).await;
    assert!(next().await);
    let repeat = tokio::time::timeout(Duration::from_millis(1500), stream.message()).await;
    assert!(
        repeat.is_err(),
        "no repeated 'true' while the state holds: {repeat:?}"
    );
}
