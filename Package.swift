// swift-tools-version:6.1
import PackageDescription

// Warnings are errors in CI (CI=true), so a warning never lands; locally they stay warnings.
let werror: [SwiftSetting] = Context.environment["CI"].map { $0.isEmpty ? [] : [.unsafeFlags(["-warnings-as-errors"])] } ?? []

let strict: [SwiftSetting] =
    [
        .swiftLanguageMode(.v6),
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("InternalImportsByDefault"),
    ] + werror

let package = Package(
    name: "llmspool",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "JSON", targets: ["JSON"]),
        .library(name: "Spool", targets: ["Spool"]),
        .executable(name: "llmspool", targets: ["llmspool"]),
        .executable(name: "llmspool-cgi", targets: ["llmspool-cgi"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The few Linux calls Swift cannot reach directly (renameat2 is not exported by Glibc's module map).
        .target(name: "CSpoolShim"),
        // Two small pure pieces both the spool and the HTTP sides need: civil-date arithmetic (RFC 3339
        // and HTTP-date) and HTTP's optional-whitespace trim. No dependencies.
        .target(name: "Basics", swiftSettings: strict),
        // JSON as the spool's documents need it: order-keeping values, a linear parser with limits,
        // a compact writer. No dependencies at all, so every module (and the CGI) can use it.
        .target(name: "JSON", swiftSettings: strict),
        // The spool: on-disk contract, documents, syscalls. No Foundation, so the CGI path stays light.
        .target(
            name: "Spool",
            dependencies: [
                "Basics",
                "CSpoolShim",
                "JSON",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // The configuration file (/etc/llmspool/llmspool.json): finding, reading and splitting it, checked
        // values whose errors name the key, the bridge's section. Spool only, so the CGI can read it.
        .target(name: "Settings", dependencies: ["Basics", "JSON", "Spool"], swiftSettings: strict),
        // libcurl, found through pkg-config (Debian: libcurl4-openssl-dev).
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // Non-variadic wrappers of curl_easy_setopt/curl_multi_setopt/curl_easy_getinfo, and the
        // epoll/eventfd calls of the LLM module's transfer loop (not in Glibc's module map).
        .target(name: "CCurlShim", dependencies: ["CCurl"]),
        // The LLM client: HTTP over libcurl's multi interface, OpenAI-compatible chat completions,
        // retry policy, rate-limit headers. No Foundation.
        .target(
            name: "LLM",
            dependencies: [
                "Basics",
                "CCurl",
                "CCurlShim",
                "JSON",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // librdkafka, found through pkg-config (Debian: librdkafka-dev), with the mock cluster header.
        .systemLibrary(
            name: "CKafka", path: "Sources/CKafka", pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // rd_kafka_producev is variadic: one non-variadic wrapper.
        .target(name: "CKafkaShim", dependencies: ["CKafka"]),
        // What every daemon needs: readiness and watchdog notification to systemd, the Prometheus
        // listener, and the listener as a Service of the daemon's ServiceGroup.
        .target(
            name: "Daemon",
            dependencies: [
                "Basics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The Kafka bridge: jobs and results between the spool and Kafka topics, both ways.
        .target(
            name: "Bridge",
            dependencies: [
                "Basics",
                "CKafka",
                "CKafkaShim",
                "JSON",
                "Spool",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The worker daemon: fair scheduling, rate limits, retries, graceful shutdown.
        .target(
            name: "Worker",
            dependencies: [
                "Basics",
                "Daemon",
                "JSON",
                "Settings",
                "Spool",
                "LLM",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "llmspool",
            dependencies: [
                "Basics",
                "Daemon",
                "JSON",
                "Spool",
                "Settings",
                "Submit",
                "Worker",
                "Bridge",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The submit endpoint: request parsing, routing, identity, problem+json, and the CGI I/O. No Foundation.
        .target(
            name: "Submit",
            dependencies: ["Basics", "JSON", "Spool", "Settings", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // The CGI program web servers run per request: Spool, Settings and Submit only, linked as a static
        // executable (no dynamic loader at exec: about 1 ms less per request than -static-stdlib;
        // start-up is its budget: see bench/cgi/README.md). Linked with lld: GNU ld warns that the
        // Swift runtime's libprespecialized lookup calls dlopen in a static binary; that call is taken
        // only with SWIFT_DEBUG_ENABLE_LIB_PRESPECIALIZED set, which no web server passes.
        .executableTarget(
            name: "llmspool-cgi",
            dependencies: ["Submit"],
            swiftSettings: strict,
            linkerSettings: [.unsafeFlags(["-static-executable", "-use-ld=lld"])]
        ),
        // Helpers shared by the test targets: a free loopback port, a seeded random generator.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        // JSONTestSuite/ is nst/JSONTestSuite's parsing corpus (MIT), read by path at test time.
        .testTarget(name: "SpoolTests", dependencies: ["Basics", "JSON", "Spool"], exclude: ["JSONTestSuite"], swiftSettings: strict),
        // The configuration file's top level and the bridge and CGI sections, without a process.
        .testTarget(name: "SettingsTests", dependencies: ["JSON", "Settings", "Submit", "Spool", "TestSupport"], swiftSettings: strict),
        // Unit tests of the pure parts, and the engine against a real HTTP server (Tests/peers/fake_llm.py).
        .testTarget(name: "LLMTests", dependencies: ["LLM", "JSON", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "WorkerTests", dependencies: ["Basics", "Worker", "JSON", "Settings", "Spool", "TestSupport"], swiftSettings: strict),
        // The bridge's state machines (one per direction), its message decoding and delivery tags,
        // without a broker or a disk.
        .testTarget(name: "BridgeTests", dependencies: ["Bridge", "CKafka", "JSON", "Spool"], swiftSettings: strict),
        // Unit tests of the submit endpoint, and the built llmspool-cgi under real lighttpd and nginx+fcgiwrap.
        .testTarget(
            name: "SubmitTests", dependencies: ["Basics", "Submit", "JSON", "Spool", "llmspool", "TestSupport"], exclude: ["Corpus"], swiftSettings: strict),
        // Drives the built `llmspool` binary as separate processes (the dependency makes SwiftPM build it).
        .testTarget(name: "CLITests", dependencies: ["JSON", "Spool", "llmspool", "TestSupport"], swiftSettings: strict),
    ]
)
