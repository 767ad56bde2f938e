//! The real `motcua` binary against a running projection: the district's
//! 2017 and 2020 figures go in through intake's gRPC API, and `motcua
//! report` writes them back as the report's appendix (XLSX and CSV, with
//! Vietnamese headings and numbers) and as a terminal table. Expected values
//! come from the district file; the labels are the seed report's wording.
//!
//! Needs the `motcua` binary built beside the tests: `cargo test --workspace`
//! builds it; `cargo test -p tests` alone does not (`cargo build -p motcua`).

use std::{path::Path, process::Output, time::Duration};

use anyhow::Context as _;
use calamine::{Data, Reader as _, Xlsx, open_workbook};
use tests::{
    Backend, Pair,
    district::{self, OFFICE, YearFigures},
    eventually, free_port,
};

/// A year with 1,468 surveys the report printed as 18.42% (it is 16.39%),
/// and 2020 (Q1), whose ratio the report printed upside down and whose
/// surveys use the other rating scale. Two years keep the test short.
const YEARS: [i32; 2] = [2017, 2020];

const RESULTS: &str = "Kết quả giải quyết hồ sơ TTHC";
const ON_TIME_DISTRICT: &str = "Tỷ lệ hồ sơ cấp huyện giải quyết đúng hạn (ghi rõ số hồ sơ giải quyết đúng hạn/Tổng số hồ sơ đã giải quyết)";
const RECEIVED: &str = "Số hồ sơ tiếp nhận";
const RESOLVED: &str = "Tổng số hồ sơ đã giải quyết";
const ON_TIME: &str = "Số hồ sơ giải quyết đúng hạn";
const LATE: &str = "Số hồ sơ trễ hạn";
const SURVEYS_HEADING: &str = "Kết quả khảo sát sự hài lòng của tổ chức, cá nhân và doanh nghiệp đối với sự phục vụ của cơ quan quản lý nhà nước trong giải quyết TTHC";
const SURVEYS: &str = "Số phiếu khảo sát";
const COVERAGE: &str = "Tỷ lệ so với tổng số hồ sơ tiếp nhận";
const VERY_SATISFIED: &str = "Số phiếu đánh giá rất hài lòng";
const SATISFIED: &str = "Số phiếu đánh giá hài lòng";
const GOOD: &str = "Số phiếu có ý kiến Tốt";
const AVERAGE: &str = "Số phiếu có ý kiến Bình thường";

const COUNT_FORMAT: &str = r"[>=1000000]#\.###\.###;[>=1000]#\.###;0";
const PERCENT_FORMAT: &str = "[$-42A]0.00%";

/// Runs the built `motcua` binary with no address in its environment.
async fn motcua(args: &[&str]) -> anyhow::Result<Output> {
    tokio::process::Command::new(tests::binary("motcua")?)
        .args(args)
        .env_remove("MOTCUA_PROJECTION")
        .env_remove("MOTCUA_INTAKE")
        .output()
        .await
        .context("run motcua")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn succeeded(out: Output) -> anyhow::Result<String> {
    anyhow::ensure!(
        out.status.success(),
        "motcua failed ({}): {}",
        out.status,
        stderr(&out)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn year(figures: &[YearFigures], year: i32) -> &YearFigures {
    figures
        .iter()
        .find(|y| y.year == year)
        .expect("a year of the district file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_writes_the_appendix_from_a_running_projection() -> anyhow::Result<()> {
    tests::binary("motcua")?; // fail before driving anything
    let pair = Pair::start(Backend::Postgres).await?;
    let desk = pair.desk().await?;
    let province = pair.province().await?;
    let figures: Vec<YearFigures> = district::figures()?
        .into_iter()
        .filter(|y| YEARS.contains(&y.year))
        .collect();
    assert_eq!(figures.len(), YEARS.len());
    let scripts: Vec<_> = figures.iter().flat_map(district::scripts).collect();
    let dossiers = scripts.len() as u64;
    let surveys: u64 = figures.iter().map(|y| y.surveys).sum();
    district::drive(&desk, scripts, 64).await?;
    eventually(Duration::from_secs(120), || async {
        let series = province.yearly(OFFICE).await?;
        let received: u64 = series.rows.iter().map(|r| r.received).sum();
        let resolved: u64 = series.rows.iter().map(|r| r.resolved).sum();
        let counted: u64 = series.rows.iter().map(|r| r.surveys).sum();
        anyhow::ensure!(
            received == dossiers && resolved == dossiers && counted == surveys,
            "projection not caught up: {received} received, {resolved} resolved, {counted} surveys"
        );
        Ok(())
    })
    .await?;

    let url = format!("http://{}", pair.projection.addr);
    let report = |format: &'static str| {
        [
            "--projection",
            url.as_str(),
            "report",
            "--office",
            OFFICE,
            "--from-year",
            "2017",
            "--to-year",
            "2020",
            "--format",
            format,
        ]
    };

    // 1. XLSX, read back with calamine.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tuy-phong-2017-2020.xlsx");
    let path_arg = path.to_str().context("a UTF-8 temporary path")?;
    let mut args = report("xlsx").to_vec();
    args.extend(["--output", path_arg]);
    let stdout = succeeded(motcua(&args).await?)?;
    assert!(stdout.is_empty(), "nothing on the terminal: {stdout:?}");
    check_workbook(&path, &figures)?;

    // xlsx without --output is refused, and nothing reaches the terminal.
    let out = motcua(&report("xlsx")).await?;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("--output"), "{}", stderr(&out));

    // 2. CSV on standard output.
    let csv = succeeded(motcua(&report("csv")).await?)?;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "STT,Chỉ tiêu,Năm 2017,Năm 2018,Năm 2019,Năm 2020");
    assert_eq!(lines[1], format!("5,{RESULTS},,,,"));
    assert_eq!(
        lines[2],
        format!("5.2,{ON_TIME_DISTRICT},8953/8955,0/0,0/0,2700/2717")
    );
    assert!(
        lines.contains(&format!("-,{RECEIVED},8.955,0,0,2.717").as_str()),
        "{csv}"
    );
    assert!(
        lines.contains(&format!("-,{SURVEYS},1.468,0,0,350").as_str()),
        "{csv}"
    );
    // 1,468 / 8,955 = 16.39% (the report printed 18.42%); 350 / 2,717 = 12.88%;
    // 2018 and 2019 received nothing: no coverage, "/" as the appendix writes it.
    assert!(
        lines.contains(&format!("-,{COVERAGE},\"16,39%\",/,/,\"12,88%\"").as_str()),
        "{csv}"
    );
    assert!(
        lines.contains(&format!("-,{VERY_SATISFIED},1.171,/,/,/").as_str()),
        "{csv}"
    );

    // 3. The terminal table.
    let table = succeeded(motcua(&report("table")).await?)?;
    check_table(&table, "office TUY-PHONG")?;
    // The same figures for the whole province, from its yearly series.
    let table = succeeded(
        motcua(&[
            "--projection",
            &url,
            "report",
            "--province",
            "BTH",
            "--from-year",
            "2017",
            "--to-year",
            "2020",
        ])
        .await?,
    )?;
    check_table(&table, "province BTH")?;
    // A province without --from-year/--to-year: every year with events.
    let table = succeeded(motcua(&["--projection", &url, "report", "--province", "BTH"]).await?)?;
    let years: Vec<&str> = table
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(years, ["2017", "2018", "2019", "2020"], "{table}");

    check_units(&province, &url, dossiers).await?;

    // The service's refusal, on one line.
    let out = motcua(&["--projection", &url, "report", "--office", "not an office"]).await?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "motcua: projection at {url} refused the request (InvalidArgument): office_code:"
        )),
        "{err}"
    );
    Ok(())
}

/// `motcua units`: the office and its province with their dates, as
/// ListUnits gives them.
async fn check_units(province: &tests::Province, url: &str, dossiers: u64) -> anyhow::Result<()> {
    let units = province.units("").await?;
    let [office] = &units.offices[..] else {
        anyhow::bail!("one office: {units:?}");
    };
    let date = |d: Option<&proto::reports::v1::LocalDate>| {
        d.map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
            .unwrap_or_default()
    };
    let (first, last) = (
        date(office.first_event_day.as_ref()),
        date(office.last_event_day.as_ref()),
    );
    assert!(
        first.starts_with("2017-") && last.starts_with("2020-"),
        "{office:?}"
    );
    let table = succeeded(motcua(&["--projection", url, "units"]).await?)?;
    let words: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let received = dossiers.to_string();
    assert_eq!(
        words[1],
        [
            OFFICE,
            "BTH",
            first.as_str(),
            last.as_str(),
            received.as_str()
        ],
        "{table}"
    );
    assert_eq!(
        words[4],
        ["BTH", "1", first.as_str(), last.as_str(), received.as_str()],
        "{table}"
    );
    let json = succeeded(motcua(&["--projection", url, "units", "--json"]).await?)?;
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(objects.len(), 2, "{json}");
    assert_eq!(objects[0]["office_code"], OFFICE);
    assert_eq!(objects[0]["first_event_day"], first.as_str());
    assert_eq!(objects[1]["kind"], "province");
    assert_eq!(objects[1]["dossiers_received"], dossiers);
    Ok(())
}

fn check_table(table: &str, unit: &str) -> anyhow::Result<()> {
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], unit, "{table}");
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(lines[1]),
        [
            "year",
            "received",
            "in",
            "time/resolved",
            "late",
            "surveys",
            "coverage"
        ]
    );
    assert_eq!(lines.len(), 2 + 4, "{table}");
    let row = |year: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(year))
            .map(|l| words(l))
            .with_context(|| format!("no {year} row in\n{table}"))
    };
    assert_eq!(
        row("2017")?,
        ["2017", "8955", "8953/8955", "2", "1468", "16.39%"]
    );
    assert_eq!(
        row("2020")?,
        ["2020", "2717", "2700/2717", "17", "350", "12.88%"]
    );
    assert_eq!(row("2018")?, ["2018", "0", "0/0", "0", "0", "/"]);
    // Right-aligned: every line of the table ends in the same column.
    let width = lines[1].chars().count();
    for line in &lines[2..] {
        assert_eq!(line.chars().count(), width, "{line:?} in\n{table}");
    }
    Ok(())
}

fn check_workbook(path: &Path, figures: &[YearFigures]) -> anyhow::Result<()> {
    let mut book: Xlsx<_> = open_workbook(path)?;
    let sheets = book.sheet_names();
    assert_eq!(sheets, ["Phụ lục 03"]);
    let range = book.worksheet_range("Phụ lục 03")?;
    let styles = book.worksheet_style("Phụ lục 03")?;
    let (start, end) = (
        range.start().context("an empty sheet")?,
        range.end().context("an empty sheet")?,
    );
    let value = |row: u32, col: u32| range.get_value((row, col)).cloned().unwrap_or(Data::Empty);
    let text = |row: u32, col: u32| value(row, col).to_string();
    let find = |wanted: &str, col: Option<u32>| {
        (start.0..=end.0)
            .flat_map(|r| (start.1..=end.1).map(move |c| (r, c)))
            .filter(|&(r, c)| col.is_none_or(|col| col == c) && text(r, c) == wanted)
            .collect::<Vec<_>>()
    };
    let format_of = |row: u32, col: u32| {
        styles
            .get((row, col))
            .and_then(|s| s.number_format.as_ref())
            .map(|f| f.format_code.clone())
            .unwrap_or_default()
    };

    assert_eq!(text(0, 0), "Phụ lục 03:");
    assert_eq!(
        text(1, 0),
        "Thống kê các chỉ tiêu tại lĩnh vực cải cách thủ tục hành chính của các ngành, địa phương"
    );
    assert_eq!(text(2, 0), "Đơn vị: TUY-PHONG");
    // The two heading rows.
    let [(heading_row, stt_col)] = find("STT", None)[..] else {
        anyhow::bail!("one STT heading");
    };
    assert_eq!(text(heading_row, stt_col + 1), "Chỉ tiêu");
    assert_eq!(text(heading_row, stt_col + 2), "Giai đoạn 2017 - 2020");
    let years: Vec<String> = (0..4)
        .map(|i| text(heading_row + 1, stt_col + 2 + i))
        .collect();
    assert_eq!(years, ["Năm 2017", "Năm 2018", "Năm 2019", "Năm 2020"]);
    let year_col = |year: i32| stt_col + 2 + (year - 2017) as u32;

    // The row labels, in the appendix's order and wording.
    let label_col = stt_col + 1;
    let labels: Vec<String> = (heading_row + 2..=end.0)
        .map(|r| text(r, label_col))
        .collect();
    assert_eq!(
        labels,
        [
            RESULTS,
            ON_TIME_DISTRICT,
            RECEIVED,
            RESOLVED,
            ON_TIME,
            LATE,
            SURVEYS_HEADING,
            SURVEYS,
            COVERAGE,
            VERY_SATISFIED,
            SATISFIED,
            GOOD,
            AVERAGE
        ]
    );
    let row_of = |label: &str| -> anyhow::Result<u32> {
        match find(label, Some(label_col))[..] {
            [(row, _)] => Ok(row),
            _ => anyhow::bail!("one row labelled {label}"),
        }
    };
    assert_eq!(text(row_of(ON_TIME_DISTRICT)?, stt_col), "5.2");

    // Counts are numbers shown as 8.955; percentages numbers shown as 16,39%;
    // the on-time ratio is text, as the appendix writes it.
    let count = |label: &str, year: i32| -> anyhow::Result<f64> {
        let (row, col) = (row_of(label)?, year_col(year));
        assert_eq!(format_of(row, col), COUNT_FORMAT, "{label} {year}");
        match value(row, col) {
            Data::Float(f) => Ok(f),
            other => anyhow::bail!("{label} {year} is {other:?}, not a number"),
        }
    };
    for y in figures {
        assert_eq!(count(RECEIVED, y.year)?, y.received as f64);
        assert_eq!(count(RESOLVED, y.year)?, y.received as f64);
        assert_eq!(count(ON_TIME, y.year)?, y.in_time as f64);
        assert_eq!(count(LATE, y.year)?, y.late as f64);
        assert_eq!(count(SURVEYS, y.year)?, y.surveys as f64);
        assert_eq!(
            value(row_of(ON_TIME_DISTRICT)?, year_col(y.year)),
            Data::String(format!("{}/{}", y.in_time, y.received))
        );
        let (row, col) = (row_of(COVERAGE)?, year_col(y.year));
        assert_eq!(format_of(row, col), PERCENT_FORMAT);
        let Data::Float(coverage) = value(row, col) else {
            anyhow::bail!("coverage {} is not a number", y.year);
        };
        assert!((coverage - y.surveys as f64 / y.received as f64).abs() < 1e-12);
    }
    let y2017 = year(figures, 2017);
    assert_eq!(count(RECEIVED, 2017)?, 8955.0);
    assert_eq!(count(SURVEYS, 2017)?, 1468.0);
    let Data::Float(coverage) = value(row_of(COVERAGE)?, year_col(2017)) else {
        anyhow::bail!("coverage 2017 is not a number");
    };
    assert_eq!(format!("{:.2}%", coverage * 100.0), "16.39%");
    assert_eq!(
        value(row_of(ON_TIME_DISTRICT)?, year_col(2017)),
        Data::String("8953/8955".into())
    );
    // 2020: the report printed 2717/2700.
    assert_eq!(
        value(row_of(ON_TIME_DISTRICT)?, year_col(2020)),
        Data::String("2700/2717".into())
    );
    // Ratings on the scale in force; "/" where the year used the other one.
    assert_eq!(count(VERY_SATISFIED, 2017)?, y2017.rating_top as f64);
    assert_eq!(count(SATISFIED, 2017)?, y2017.rating_second as f64);
    let y2020 = year(figures, 2020);
    assert_eq!(count(GOOD, 2020)?, y2020.rating_top as f64);
    assert_eq!(count(AVERAGE, 2020)?, y2020.rating_second as f64);
    assert_eq!(
        value(row_of(GOOD)?, year_col(2017)),
        Data::String("/".into())
    );
    // A year without events is zeros, not blanks; its coverage has no
    // base: "/", as text.
    assert_eq!(count(RECEIVED, 2018)?, 0.0);
    assert_eq!(
        value(row_of(COVERAGE)?, year_col(2018)),
        Data::String("/".into())
    );
    assert_eq!(
        value(row_of(ON_TIME_DISTRICT)?, year_col(2018)),
        Data::String("0/0".into())
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_projection_is_named_on_one_line() -> anyhow::Result<()> {
    let port = free_port(); // free: nothing listens there
    let url = format!("http://127.0.0.1:{port}");
    let out = motcua(&[
        "--projection",
        &url,
        "report",
        "--office",
        OFFICE,
        "--from-year",
        "2015",
        "--to-year",
        "2020",
    ])
    .await?;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        format!("motcua: cannot reach projection at {url}: connection refused\n")
    );

    // The address may come from the environment.
    let out = tokio::process::Command::new(tests::binary("motcua")?)
        .args(["report", "--office", OFFICE, "--format", "csv"])
        .env("MOTCUA_PROJECTION", &url)
        .output()
        .await?;
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!("motcua: cannot reach projection at {url}: connection refused\n")
    );
    Ok(())
}
